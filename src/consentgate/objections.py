"""Art. 21 objections: filing, deciding, extending and listing, with Art. 12(3) deadlines.

On receipt processing for the objected purposes is restricted (Art. 18(1)(d)); the DPO upholds the
objection (the purposes stay excluded) or rejects it with reasons (processing resumes from the
decision). An objection to direct marketing is upheld at once (Art. 21(2)–(3)): when a member
objects to direct-marketing and other purposes together, the direct-marketing part is split off
into its own, already upheld, objection so it never waits for a review.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from consentgate.decisions.engine import member_state
from consentgate.exceptions import InputError, NotFoundError, ObjectionStateError
from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.state import (
    ObjectionOutcome,
    ObjectionStatus,
    objection_payload,
    objections_from,
)
from consentgate.ledger.store import Ledger
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import ensure_utc, format_instant, from_micros, to_micros

AUTOMATIC_REASON = "Objection to direct marketing: always honoured (GDPR Art. 21(3))."


def _reference(seed: str) -> str:
    return "OBJ-" + hashlib.sha256(seed.encode()).hexdigest()[:10].upper()


MAX_GROUNDS = 5000
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""What no free text may hold (the API's ``TEXT`` pattern says the same): NUL and the other controls."""


def file_objection(
    ledger: Ledger,
    taxonomy: Taxonomy,
    *,
    member_id: int,
    purposes: Sequence[str],
    at: datetime | None,
    grounds: str = "",
    source: Source = Source.member,
    actor: str = "member",
    idempotency_key: str | None = None,
) -> list[ObjectionStatus]:
    """Record an objection; returns one status, or two when direct marketing is split off."""
    if not purposes:
        raise InputError("--purposes: name at least one purpose")
    if len(grounds) > MAX_GROUNDS:
        raise InputError(f"grounds: at most {MAX_GROUNDS:,} characters, got {len(grounds):,}")
    bad = CONTROL_CHARACTERS.search(grounds)
    if bad is not None:
        raise InputError(
            f"grounds: control character U+{ord(bad.group()):04X} at position {bad.start() + 1};"
            " expected plain text (line breaks and tabs are fine)"
        )
    for purpose in purposes:
        taxonomy.purpose(purpose)
    when = ensure_utc(at, field="at") if at is not None else ledger.clock()
    state = member_state(ledger, member_id, when)
    if not state.known:
        raise NotFoundError(f"member {member_id} is not in the ledger as of {format_instant(when)}")
    key = idempotency_key or f"objection:{uuid.uuid4().hex}"
    direct = sorted({p for p in purposes if taxonomy.purposes[p].direct_marketing})
    other = sorted({p for p in purposes if not taxonomy.purposes[p].direct_marketing})
    at_us = None if at is None else to_micros(when)
    drafts: list[EventDraft] = []
    references: list[str] = []
    for part, suffix in ((other, ""), (direct, ":direct-marketing")):
        if not part:
            continue
        reference = _reference(key + suffix)
        references.append(reference)
        drafts.append(
            EventDraft(
                member_id,
                EventKind.objection_received,
                reference,
                objection_payload(part, grounds),
                at_us,
                source,
                actor,
                f"{key}{suffix}:received",
            )
        )
        if part is direct:
            drafts.append(
                EventDraft(
                    member_id,
                    EventKind.objection_decided,
                    reference,
                    json.dumps(
                        {"outcome": "upheld", "reason": AUTOMATIC_REASON, "automatic": True},
                        sort_keys=True,
                    ),
                    at_us,
                    Source.system,
                    "consentgate",
                    f"{key}{suffix}:decided",
                )
            )
    stored = ledger.append(drafts)
    statuses = objections_from(stored)
    return [statuses[r] for r in references]


def get_objection(ledger: Ledger, reference: str) -> ObjectionStatus:
    statuses = objections_from(ledger.objection_events(reference))
    if reference not in statuses:
        raise NotFoundError(f"no objection with reference {reference!r}")
    return statuses[reference]


def decide_objection(
    ledger: Ledger,
    *,
    reference: str,
    uphold: bool,
    reason: str,
    at: datetime | None,
    actor: str = "dpo",
) -> ObjectionStatus:
    """Record the DPO's decision; a rejection must give reasons (Art. 12(4))."""
    if not reason.strip():
        raise InputError("--reason: a decision must give its reasons")
    status, when = _open_objection(ledger, reference, at)
    body: dict[str, object] = {
        "outcome": "upheld" if uphold else "rejected",
        "reason": reason.strip(),
        "automatic": False,
    }
    if not uphold:
        body["complaint"] = (
            "You may lodge a complaint with a supervisory authority (GDPR Art. 77) "
            "and seek a judicial remedy."
        )
    return _record(ledger, status, EventKind.objection_decided, body, when, actor)


def extend_objection(
    ledger: Ledger,
    *,
    reference: str,
    months: int,
    reason: str,
    at: datetime | None,
    actor: str = "dpo",
) -> ObjectionStatus:
    """Extend the deadline by one or two months; only within the first month (Art. 12(3))."""
    if months not in (1, 2):
        raise InputError(f"--months: the deadline can be extended by 1 or 2 months, not {months}")
    if not reason.strip():
        raise InputError("--reason: the member must be told why the answer takes longer")
    status, when = _open_objection(ledger, reference, at)
    if status.extension is not None:
        raise ObjectionStateError(
            f"objection {reference} was already extended by {status.extension_months} month(s); "
            "only one extension of at most two months is allowed"
        )
    if when > status.first_month_ends:
        raise ObjectionStateError(
            f"objection {reference}: an extension must be announced within one month of receipt "
            f"(by {format_instant(status.first_month_ends)}); it is {format_instant(when)}"
        )
    return _record(
        ledger,
        status,
        EventKind.objection_extended,
        {"months": months, "reason": reason.strip()},
        when,
        actor,
    )


def _open_objection(ledger: Ledger, reference: str, at: datetime | None) -> tuple[ObjectionStatus, datetime]:
    """The objection, still undecided, and the instant of the action (not before its receipt)."""
    status = get_objection(ledger, reference)
    when = ensure_utc(at, field="at") if at is not None else ledger.clock()
    if status.decision is not None:
        raise ObjectionStateError(
            f"objection {reference} was already {status.outcome} "
            f"on {format_instant(status.decision.effective)}"
        )
    if when < status.received_at:
        raise InputError(
            f"--at: {format_instant(when)} is before the objection was received "
            f"({format_instant(status.received_at)})"
        )
    return status, when


def _record(
    ledger: Ledger,
    status: ObjectionStatus,
    kind: EventKind,
    body: dict[str, object],
    when: datetime,
    actor: str,
) -> ObjectionStatus:
    """Append a DPO action on an objection; one per kind and objection (the idempotency key says so)."""
    suffix = "decision" if kind is EventKind.objection_decided else "extension"
    draft = EventDraft(
        status.member_id,
        kind,
        status.reference,
        json.dumps(body, sort_keys=True),
        to_micros(when),
        Source.dpo,
        actor,
        f"objection-{suffix}:{status.reference}",
    )
    ledger.append([draft])
    return get_objection(ledger, status.reference)


def list_objections(
    ledger: Ledger, *, at: datetime | None = None, overdue_only: bool = False
) -> list[ObjectionStatus]:
    """Objections as of ``at`` (default: everything recorded), by due date; optionally only overdue."""
    events: list[LedgerEvent] = ledger.objection_events()
    if at is not None:
        cutoff = to_micros(ensure_utc(at, field="at"))
        events = [e for e in events if e.effective_at <= cutoff]
    statuses = sorted(objections_from(events).values(), key=lambda s: (s.due, s.reference))
    if overdue_only:
        when = ensure_utc(at, field="at") if at is not None else ledger.clock()
        statuses = [s for s in statuses if s.overdue(when)]
    return statuses


def status_line(status: ObjectionStatus, at: datetime) -> str:
    """One line for lists: outcome, due date and whether it is overdue."""
    if status.outcome is ObjectionOutcome.pending:
        late = " OVERDUE" if status.overdue(at) else ""
        return f"pending, due {format_instant(status.due)}{late}"
    assert status.decision is not None
    return f"{status.outcome} on {format_instant(from_micros(status.decision.effective_at))}"
