"""Turning what happened into ledger events: registrations, member facts, setting changes, notices."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from consentgate.exceptions import InputError
from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.store import Ledger
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import to_micros

EARLIEST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
"""Members imported without ``registered_at`` are known from the start of the ledger's time."""


def new_idempotency_key(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


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
    """The events that register a member with their facts, all effective at ``registered_at``.

    Idempotency keys are derived from the content, so importing the same member twice appends
    nothing the second time.
    """
    at = to_micros(registered_at)
    base = f"member:{member_id}"
    drafts = [
        EventDraft(
            member_id,
            EventKind.member_registered,
            "registered",
            "true",
            at,
            source,
            actor,
            f"{base}:registered:{at}",
        ),
        EventDraft(
            member_id,
            EventKind.member_fact,
            "country",
            country,
            at,
            source,
            actor,
            f"{base}:country:{country}:{at}",
        ),
    ]
    if birth_date is not None:
        value = birth_date.isoformat()
        drafts.append(
            EventDraft(
                member_id,
                EventKind.member_fact,
                "birth_date",
                value,
                at,
                source,
                actor,
                f"{base}:birth_date:{value}:{at}",
            )
        )
    if believed_minor is not None:
        value = "true" if believed_minor else "false"
        drafts.append(
            EventDraft(
                member_id,
                EventKind.member_fact,
                "believed_minor",
                value,
                at,
                source,
                actor,
                f"{base}:believed_minor:{value}:{at}",
            )
        )
    return drafts


def setting_draft(
    taxonomy: Taxonomy,
    *,
    member_id: int,
    setting: str,
    value: bool,
    at: datetime | None,
    source: Source,
    actor: str,
    idempotency_key: str | None = None,
) -> EventDraft:
    taxonomy.toggle(setting)
    return EventDraft(
        member_id=member_id,
        kind=EventKind.setting_changed,
        key=setting,
        value="true" if value else "false",
        effective_at=None if at is None else to_micros(at),
        source=source,
        actor=actor,
        idempotency_key=idempotency_key or new_idempotency_key("setting"),
    )


def change_settings(
    ledger: Ledger,
    taxonomy: Taxonomy,
    *,
    member_id: int,
    changes: dict[str, bool],
    at: datetime | None,
    source: Source,
    actor: str,
    idempotency_key: str | None = None,
) -> list[LedgerEvent]:
    """Record one or more setting changes atomically (all or none)."""
    if not changes:
        raise InputError("no setting changes given")
    drafts = [
        setting_draft(
            taxonomy,
            member_id=member_id,
            setting=key,
            value=value,
            at=at,
            source=source,
            actor=actor,
            idempotency_key=None if idempotency_key is None else f"{idempotency_key}:{key}",
        )
        for key, value in changes.items()
    ]
    return ledger.append(drafts)


def fact_draft(
    *, member_id: int, key: str, value: str, at: datetime, source: Source, actor: str
) -> EventDraft:
    at_us = to_micros(at)
    return EventDraft(
        member_id,
        EventKind.member_fact,
        key,
        value,
        at_us,
        source,
        actor,
        f"member:{member_id}:{key}:{value}:{at_us}",
    )


def acknowledge_notice(
    ledger: Ledger,
    *,
    member_id: int,
    policy_ref: str,
    at: datetime | None,
    source: Source,
    actor: str,
) -> LedgerEvent:
    draft = EventDraft(
        member_id,
        EventKind.notice_acknowledged,
        policy_ref,
        "acknowledged",
        None if at is None else to_micros(at),
        source,
        actor,
        f"notice:{member_id}:{policy_ref}",
    )
    return ledger.append([draft])[0]
