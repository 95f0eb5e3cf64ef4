"""The exceptions consentgate raises, as one tree.

::

    ConsentgateError                  base; carries an HTTP status for the web layer
    ├── InputError (ValueError)       bad input from a user or a file (400)
    │   ├── TimestampError            a timestamp without offset or not ISO 8601
    │   ├── PolicyValidationError     a policy file that breaks the schema (file, field path)
    │   ├── TaxonomyError             an unknown category, purpose, setting or region key
    │   ├── ImportRowError            a bad row in a bulk import (file, row, field, expected)
    │   └── CheckpointError           a bad key file or checkpoint line (malformed, unknown key, forged)
    ├── NotFoundError                 an unknown member, objection or policy (404)
    ├── ConflictError                 the request contradicts the ledger (409)
    │   ├── IdempotencyConflict       the same idempotency key with another payload
    │   ├── ObjectionStateError       e.g. deciding an objection twice, extending too late
    │   └── DebtOutstanding           a snapshot holds members who opted out before the training run
    ├── PublishError                  a checkpoint could not be written to its file or URL (502)
    ├── LedgerError                   the ledger itself is unusable (503)
    │   ├── LedgerNotInitialised      no schema yet: run ``consentgate init``
    │   ├── GuardMissing              the append-only triggers are gone: nothing is read from it
    │   └── ChainBroken               ``audit verify`` found an edited, missing or reordered event
    │       └── AnchorMismatch        the chain disagrees with a manifest or checkpoint kept elsewhere
    └── ProofError                    a snapshot's files or lineage do not back its manifest (500)
        └── EngineOutputError         an engine's output is missing or not the rows it counted

Every error's ``str()`` is a sentence a user can act on; the CLI prints it without a traceback.
"""

from __future__ import annotations


class ConsentgateError(Exception):
    """Base of every error consentgate raises on purpose."""

    status_code = 500


def one_line(error: object, limit: int | None = None) -> str:
    """``error``'s message on one line (drivers' span several: "Is the server running…"), cut to
    ``limit`` characters with an ellipsis when given."""
    text = " ".join(str(error).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


class InputError(ConsentgateError, ValueError):
    """Input that does not have the expected form."""

    status_code = 400


class TimestampError(InputError):
    """A timestamp that is not ISO 8601 with an explicit offset."""


class PolicyValidationError(InputError):
    """A policy file that breaks the schema; names the file and the path to each bad field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid policy\n{listing}")


class TaxonomyError(InputError):
    """A key that the taxonomy does not know."""


class ImportRowError(InputError):
    """A bad row in a bulk import file. Nothing of the file was imported."""

    def __init__(self, file: str, row: int, field: str, message: str) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.message = message
        super().__init__(f"{file}, row {row}, field {field!r}: {message} (nothing was imported)")


class CheckpointError(InputError):
    """A key file or a checkpoint that cannot be used: malformed, signed by an unknown key, forged."""


class NotFoundError(ConsentgateError):
    """Something named by the user does not exist."""

    status_code = 404


class ConflictError(ConsentgateError):
    """The request contradicts what the ledger already holds."""

    status_code = 409


class IdempotencyConflict(ConflictError):
    """An idempotency key was reused for a different event."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        """Position of the conflicting event in the batch, when known."""
        super().__init__(message)


class ObjectionStateError(ConflictError):
    """An objection action that its current state does not allow."""


class DebtOutstanding(ConflictError):
    """A training run (registration or read) would use members' data after their opt-out.

    ``count`` is the number of members in debt; the message names examples and the two ways out.
    """

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


class PublishError(ConsentgateError):
    """A checkpoint or a lineage event could not be appended to its file or delivered to its URL."""

    status_code = 502


class ServiceUnavailable(ConsentgateError):
    """Something the request needs cannot be reached now (a rate-limit store): try again later."""

    status_code = 503


class LedgerError(ConsentgateError):
    """The ledger cannot be used."""

    status_code = 503


class LedgerNotInitialised(LedgerError):
    """The database has no consentgate schema yet."""


class GuardMissing(LedgerError):
    """The append-only triggers are missing or disabled: events may have been edited in place."""


class ChainBroken(LedgerError):
    """The hash chain does not verify."""

    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem
        super().__init__(f"hash chain broken at seq {seq}: {problem}")


class ProofError(ConsentgateError):
    """What a snapshot would claim is not what its files, its lineage or the ledger hold."""

    status_code = 500


class EngineOutputError(ProofError):
    """An engine's output files are missing, or hold other rows than its counts say."""


class EngineFailure(ConsentgateError):
    """The engine itself failed (a Spark job, stage or executor): one line, the trace in a log file."""

    status_code = 502


class AnchorMismatch(ChainBroken):
    """The chain verifies by itself but disagrees with a record of it kept outside the database.

    ``found`` is the ledger's hash at ``seq``, or None when the ledger has no such seq.
    """

    def __init__(self, anchor: str, seq: int, recorded: str, found: str | None, head_seq: int) -> None:
        self.anchor = anchor
        self.recorded = recorded
        self.found = found
        self.head_seq = head_seq
        if found is None:
            problem = (
                f"{anchor} records hash {recorded} at seq {seq}, but the ledger has no seq {seq} "
                f"(its head is seq {head_seq}): events are missing, removed after the anchor was taken"
            )
        else:
            problem = (
                f"{anchor} records hash {recorded} at seq {seq}, the ledger has {found}: "
                f"events up to seq {seq} were changed after the anchor was taken"
            )
        super().__init__(seq, problem)
