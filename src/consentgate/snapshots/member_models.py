"""One member's view of the models trained on their data: before their opt-out, after it, or allowed.

An opt-out or an objection acts only going forward (DOMAIN §1.3): a model trained while the member's
data was allowed keeps it, and every model trained afterwards must leave it out, unless an operator
recorded an override (``snapshots.training_runs``). For each snapshot that holds the member's data
and each model trained on it, ``member_models`` says which of these holds, deciding for this one
member with the policy engine (at the model's training time, and now); it never computes a whole
snapshot's debt, so it is cheap enough for a page view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from consentgate.decisions.engine import DecisionEngine
from consentgate.decisions.reasons import Reason
from consentgate.ledger.events import EventKind, LedgerEvent
from consentgate.ledger.state import MemberState, resolve_member
from consentgate.ledger.store import Ledger
from consentgate.snapshots.lineage import MemberInSnapshot, MemberLineage, member_lineage
from consentgate.snapshots.registry import ModelEntry, Registry, SnapshotEntry
from consentgate.timeutil import format_instant


class ModelStatus(StrEnum):
    allowed = "allowed"
    """Trained while the member's data was allowed, and it still is (no opt-out since)."""
    before_optout = "before_optout"
    """Trained while the data was allowed; the member has opted out (or objected) since."""
    after_optout_override = "after_optout_override"
    """Trained after the opt-out, under an override recorded with its reason."""
    after_optout = "after_optout"
    """Trained after the opt-out took effect, with no override (e.g. a back-dated opt-out recorded
    after the registration): shown as it is."""


@dataclass(frozen=True)
class Departure:
    """Why, and since when, the member's data may no longer be used for a snapshot's purpose."""

    reason: str
    """The denying reason code, e.g. ``setting_off`` or ``objection_upheld``."""
    since: datetime | None
    """When it took effect (None: unknown, e.g. a reason without evidence)."""
    seq: int | None
    setting: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class MemberModel:
    """One model trained on one snapshot that holds the member's data, as the member sees it."""

    model: str
    snapshot_id: str
    purpose: str
    trained_at: datetime
    status: ModelStatus
    departure: Departure | None = None
    """The opt-out (or other change) that ends the member's data's use; None when ``allowed``."""
    override_reason: str | None = None
    """The override's reason, when the model was registered despite the member's opt-out."""

    def to_dict(self) -> dict[str, Any]:
        d = self.departure
        return {
            "model": self.model,
            "snapshot_id": self.snapshot_id,
            "purpose": self.purpose,
            "trained_at": format_instant(self.trained_at),
            "status": str(self.status),
            "since": None if d is None or d.since is None else format_instant(d.since),
            "reason": None if d is None else d.reason,
            "seq": None if d is None else d.seq,
            "setting": None if d is None else d.setting,
            "reference": None if d is None else d.reference,
            "override_reason": self.override_reason,
        }


Verdict = tuple[ModelStatus, Departure | None, str | None]
"""A status, the departure it rests on, and the override's reason."""


def _after_snapshot(event: LedgerEvent, entry: SnapshotEntry) -> bool:
    """Whether the snapshot could not have seen ``event`` (the build's own rule for "touched")."""
    return event.effective > entry.as_of or event.seq > entry.watermark


def _causes(
    engine: DecisionEngine,
    state: MemberState,
    held: MemberInSnapshot,
    events: dict[int, LedgerEvent],
) -> list[Departure]:
    """The denials of ``held``'s categories for its purpose in ``state``, each with its start.

    A denial rests on an event the snapshot could not have seen (its effective time is the start),
    or, when its evidence was already known to the snapshot or it has none, on the policy in force
    now being another than the snapshot's (the start is that policy's ``effective_from``).
    """
    entry = held.snapshot
    policy = engine.timeline.in_force(state.at)
    then = engine.timeline.in_force(entry.as_of)
    policy_start = (
        policy.effective_from
        if policy is not None and (then is None or then.content_hash() != policy.content_hash())
        else None
    )
    found: dict[tuple[str, int | None], Departure] = {}
    for category in held.categories:
        decision = engine.decide_state(state, category, entry.purpose)
        for reason in decision.denials:
            found.setdefault((str(reason.code), reason.seq), _cause(reason, events, entry, policy_start))
    return sorted(found.values(), key=lambda d: (d.since is None, d.since or entry.as_of, d.reason))


def _cause(
    reason: Reason, events: dict[int, LedgerEvent], entry: SnapshotEntry, policy_start: datetime | None
) -> Departure:
    event = None if reason.seq is None else events.get(reason.seq)
    if event is not None and _after_snapshot(event, entry):
        since: datetime | None = event.effective
    else:
        since = policy_start
    return Departure(str(reason.code), since, reason.seq, reason.setting, reason.reference)


def _overridden(event: LedgerEvent | None, reason: str, since: datetime | None, seq: int | None) -> Departure:
    setting = event.key if event is not None and event.kind == EventKind.setting_changed else None
    reference = event.key if event is not None and event.kind == EventKind.objection_received else None
    return Departure(reason, since, seq, setting, reference)


def member_models(
    ledger: Ledger, engine: DecisionEngine, member_id: int, *, lineage: MemberLineage | None = None
) -> list[MemberModel]:
    """Per snapshot holding ``member_id``'s data and per model trained on it: when, and which status.

    Status, in this order: ``after_optout_override`` when the model's override lists the member for
    that snapshot; ``after_optout`` when, at the model's training time, a category of the member in
    the snapshot was not allowed for its purpose (a late-recorded, back-dated opt-out); otherwise
    ``before_optout`` when one is not allowed now, else ``allowed``. Decided with every event the
    ledger holds now, for this one member (one read of their events).
    """
    registry = Registry(ledger)
    if lineage is None:
        lineage = member_lineage(registry, member_id)
    holding = [held for held in lineage.snapshots if held.models]
    if not holding:
        return []
    models: dict[str, ModelEntry] = {m.name: m for m in registry.models()}
    covered = {(name, m.snapshot_id): m for name, m in registry.overridden(member_id=member_id)}
    history = ledger.member_events(member_id)
    by_seq = {e.seq: e for e in history}
    now = ledger.clock()
    states: dict[datetime, MemberState] = {}

    def state_at(instant: datetime) -> MemberState:
        if instant not in states:
            states[instant] = resolve_member(member_id, history, at=instant, watermark=None)
        return states[instant]

    current: dict[str, list[Departure]] = {}

    def judge(model: ModelEntry, held: MemberInSnapshot, trained: datetime) -> Verdict:
        entry = held.snapshot
        listed = covered.get((model.name, entry.snapshot_id))
        if listed is not None:
            event = None if listed.seq is None else by_seq.get(listed.seq)
            reason = None if model.override is None else model.override.reason
            departure = _overridden(event, listed.reason, listed.since, listed.seq)
            return ModelStatus.after_optout_override, departure, reason
        at_training = _causes(engine, state_at(trained), held, by_seq)
        if at_training:
            return ModelStatus.after_optout, at_training[0], None
        if entry.snapshot_id not in current:
            current[entry.snapshot_id] = _causes(engine, state_at(now), held, by_seq)
        causes = current[entry.snapshot_id]
        if not causes:
            return ModelStatus.allowed, None, None
        # Allowed at training, not now: the departure is the first cause after the training.
        later = [d for d in causes if d.since is not None and d.since > trained]
        return ModelStatus.before_optout, later[0] if later else causes[0], None

    out: list[MemberModel] = []
    for held in holding:
        for name in held.models:
            model = models.get(name)
            if model is None:  # removed between the two reads; nothing to say about it
                continue
            trained = model.trained_at or model.registered_at
            status, departure, reason = judge(model, held, trained)
            entry = held.snapshot
            out.append(
                MemberModel(name, entry.snapshot_id, entry.purpose, trained, status, departure, reason)
            )
    return sorted(out, key=lambda m: (m.trained_at, m.model, m.snapshot_id))
