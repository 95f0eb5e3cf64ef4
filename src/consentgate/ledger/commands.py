"""Turning what happened into ledger events: registrations, member facts, setting changes, notices."""

from __future__ import annotations

from datetime import date, datetime

from consentgate.ledger.events import EventBatch, EventDraft, EventKind, Source
from consentgate.timeutil import to_micros

EARLIEST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
"""Members imported without ``registered_at`` are known from the start of the ledger's time."""


def add_member_events(
    batch: EventBatch,
    *,
    member_id: int,
    country: str,
    birth_date: str,
    believed_minor: str,
    at: int,
    source: str,
    actor: str,
) -> None:
    """Add the events that register a member with their facts, all effective at ``at`` (µs).

    Empty ``birth_date``/``believed_minor`` mean unknown and add nothing. Idempotency keys come from
    the content, so registering the same member twice appends nothing the second time.
    """
    batch.add(
        member_id,
        EventKind.member_registered,
        "registered",
        "true",
        at,
        source,
        actor,
        f"member:{member_id}:registered:{at}",
    )
    for key, value in (("country", country), ("birth_date", birth_date), ("believed_minor", believed_minor)):
        if value:
            add_fact_event(
                batch, member_id=member_id, key=key, value=value, at=at, source=source, actor=actor
            )


def add_fact_event(
    batch: EventBatch, *, member_id: int, key: str, value: str, at: int, source: str, actor: str
) -> None:
    """Add a change of one member fact, effective at ``at`` (µs)."""
    batch.add(
        member_id,
        EventKind.member_fact,
        key,
        value,
        at,
        source,
        actor,
        f"member:{member_id}:{key}:{value}:{at}",
    )


def member_drafts(
    *,
    member_id: int,
    country: str,
    birth_date: date | None,
    believed_minor: bool | None,
    registered_at: datetime,
    source: Source,
    actor: str,
) -> list[EventDraft]:
    """The registration events of one member, as drafts for ``Ledger.append``."""
    batch = EventBatch.empty()
    add_member_events(
        batch,
        member_id=member_id,
        country=country,
        birth_date="" if birth_date is None else birth_date.isoformat(),
        believed_minor="" if believed_minor is None else str(believed_minor).lower(),
        at=to_micros(registered_at),
        source=str(source),
        actor=actor,
    )
    return batch.drafts()


def fact_draft(
    *, member_id: int, key: str, value: str, at: datetime, source: Source, actor: str
) -> EventDraft:
    """A change of one member fact (e.g. a move to another country), as a draft."""
    batch = EventBatch.empty()
    add_fact_event(
        batch, member_id=member_id, key=key, value=value, at=to_micros(at), source=str(source), actor=actor
    )
    return batch.drafts()[0]
