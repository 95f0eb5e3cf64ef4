"""The exceptions consentgate raises, as one tree.

::

    ConsentgateError                  base; carries an HTTP status for the web layer
    ├── InputError (ValueError)       bad input from a user or a file (400)
    │   ├── TimestampError            a timestamp without offset or not ISO 8601
    │   ├── PolicyValidationError     a policy file that breaks the schema (file, field path)
    │   ├── TaxonomyError             an unknown category, purpose, setting or region key
    │   └── ImportRowError            a bad row in a bulk import (file, row, field, expected)
    ├── NotFoundError                 an unknown member, objection or policy (404)
    ├── ConflictError                 the request contradicts the ledger (409)
    │   ├── IdempotencyConflict       the same idempotency key with another payload
    │   └── ObjectionStateError       e.g. deciding an objection twice, extending too late
    └── LedgerError                   the ledger itself is unusable (503)
        ├── LedgerNotInitialised      no schema yet: run ``consentgate init``
        └── ChainBroken               ``audit verify`` found an edited, missing or reordered event

Every error's ``str()`` is a sentence a user can act on; the CLI prints it without a traceback.
"""

from __future__ import annotations


class ConsentgateError(Exception):
    """Base of every error consentgate raises on purpose."""

    status_code = 500


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


class LedgerError(ConsentgateError):
    """The ledger cannot be used."""

    status_code = 503


class LedgerNotInitialised(LedgerError):
    """The database has no consentgate schema yet."""


class ChainBroken(LedgerError):
    """The hash chain does not verify."""

    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem
        super().__init__(f"hash chain broken at seq {seq}: {problem}")
