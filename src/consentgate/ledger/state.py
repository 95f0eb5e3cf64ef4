"""State as of (T, W): replaying a member's events into settings, facts and objections.

For each member and key the event with the greatest (``effective_at``, ``seq``) among those with
``effective_at <= T`` and ``seq <= W`` holds; with none, the policy's regional default applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from consentgate.ledger.events import EventKind, LedgerEvent
from consentgate.timeutil import add_months, from_micros, to_micros

ADULT_AGE = 18


class ObjectionOutcome(StrEnum):
    pending = "pending"
    upheld = "upheld"
    rejected = "rejected"


@dataclass(frozen=True)
class ObjectionStatus:
    """One Art. 21 objection as of an instant."""

    reference: str
    member_id: int
    purposes: tuple[str, ...]
    grounds: str
    received: LedgerEvent
    decision: LedgerEvent | None = None
    extension: LedgerEvent | None = None

    @property
    def received_at(self) -> datetime:
        return self.received.effective

    @property
    def outcome(self) -> ObjectionOutcome:
        if self.decision is None:
            return ObjectionOutcome.pending
        return ObjectionOutcome(json.loads(self.decision.value)["outcome"])

    @property
    def decision_reason(self) -> str | None:
        return None if self.decision is None else str(json.loads(self.decision.value)["reason"])

    @property
    def automatic(self) -> bool:
        return self.decision is not None and bool(json.loads(self.decision.value).get("automatic"))

    @property
    def first_month_ends(self) -> datetime:
        """Art. 12(3): the answer, or notice of an extension, is due within one month of receipt."""
        return add_months(self.received_at, 1)

    @property
    def extension_months(self) -> int:
        return 0 if self.extension is None else int(json.loads(self.extension.value)["months"])

    @property
    def due(self) -> datetime:
        return add_months(self.received_at, 1 + self.extension_months)

    def overdue(self, at: datetime) -> bool:
        return self.decision is None and at > self.due

    def covers(self, purpose: str) -> bool:
        return purpose in self.purposes


def objection_payload(purposes: Iterable[str], grounds: str) -> str:
    return json.dumps({"purposes": sorted(set(purposes)), "grounds": grounds}, sort_keys=True)


def objections_from(events: Iterable[LedgerEvent]) -> dict[str, ObjectionStatus]:
    """Fold objection events (already filtered to an as-of view) into their statuses."""
    out: dict[str, ObjectionStatus] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.kind == EventKind.objection_received:
            body = json.loads(event.value)
            out[event.key] = ObjectionStatus(
                reference=event.key,
                member_id=event.member_id,
                purposes=tuple(body["purposes"]),
                grounds=body.get("grounds", ""),
                received=event,
            )
        elif event.key not in out:
            continue
        elif event.kind == EventKind.objection_decided and out[event.key].decision is None:
            out[event.key] = replace(out[event.key], decision=event)
        elif event.kind == EventKind.objection_extended and out[event.key].extension is None:
            out[event.key] = replace(out[event.key], extension=event)
    return out


@dataclass(frozen=True)
class MemberState:
    """Everything the ledger knows about one member as of (T, W)."""

    member_id: int
    at: datetime
    watermark: int | None
    registered: LedgerEvent | None = None
    facts: dict[str, LedgerEvent] = field(default_factory=dict)
    settings: dict[str, LedgerEvent] = field(default_factory=dict)
    notices: dict[str, LedgerEvent] = field(default_factory=dict)
    objections: dict[str, ObjectionStatus] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.registered is not None and self.registered.value == "true"

    @property
    def country(self) -> str | None:
        event = self.facts.get("country")
        return event.value if event and event.value else None

    @property
    def birth_date(self) -> date | None:
        event = self.facts.get("birth_date")
        return date.fromisoformat(event.value) if event and event.value else None

    @property
    def believed_minor(self) -> bool | None:
        event = self.facts.get("believed_minor")
        if event is None or event.value == "":
            return None
        return event.value == "true"

    def setting_value(self, key: str) -> bool | None:
        """The member's explicit choice as of T, or None if they never chose."""
        event = self.settings.get(key)
        return None if event is None else event.value == "true"


def eighteenth_birthday(birth: date) -> date:
    """The day a member turns 18 (29 February births turn 18 on 1 March in common years)."""
    try:
        return birth.replace(year=birth.year + ADULT_AGE)
    except ValueError:
        return date(birth.year + ADULT_AGE, 3, 1)


def is_minor_on(birth: date, at: datetime) -> bool:
    """Under 18 at instant ``at`` (UTC calendar day)."""
    return at.date() < eighteenth_birthday(birth)


def _later(a: LedgerEvent | None, b: LedgerEvent) -> bool:
    return a is None or (b.effective_at, b.seq) > (a.effective_at, a.seq)


def resolve_member(
    member_id: int, events: Iterable[LedgerEvent], *, at: datetime, watermark: int | None
) -> MemberState:
    """Replay ``events`` of one member into its state as of (``at``, ``watermark``)."""
    at_us = to_micros(at)
    registered: LedgerEvent | None = None
    facts: dict[str, LedgerEvent] = {}
    settings: dict[str, LedgerEvent] = {}
    notices: dict[str, LedgerEvent] = {}
    objection_events: list[LedgerEvent] = []
    for event in events:
        if event.effective_at > at_us or (watermark is not None and event.seq > watermark):
            continue
        kind = event.kind
        if kind == EventKind.setting_changed:
            if _later(settings.get(event.key), event):
                settings[event.key] = event
        elif kind == EventKind.member_fact:
            if _later(facts.get(event.key), event):
                facts[event.key] = event
        elif kind == EventKind.member_registered:
            if _later(registered, event):
                registered = event
        elif kind == EventKind.notice_acknowledged:
            if _later(notices.get(event.key), event):
                notices[event.key] = event
        elif kind.startswith("objection_"):
            objection_events.append(event)
    return MemberState(
        member_id=member_id,
        at=at,
        watermark=watermark,
        registered=registered,
        facts=facts,
        settings=settings,
        notices=notices,
        objections=objections_from(objection_events),
    )


def describe_event(event: LedgerEvent) -> str:
    effective = from_micros(event.effective_at)
    return (
        f"seq {event.seq} ({event.kind} {event.key}={event.value!r}, "
        f"effective {effective:%Y-%m-%d %H:%M}Z, source {event.source})"
    )
