"""Training runs are registered with their time, and refused while a snapshot is in debt.

``register_trained_model`` is what ``consentgate model register`` and ``POST /api/v1/models`` call:
at the training time T the debt of every snapshot named (``snapshots.debt``) must be empty, or the
registration is refused with the count, examples and the two ways out: ``snapshot refresh`` (a
snapshot without those members) or an operator override with a reason, recorded with every member
it covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import DebtOutstanding, InputError
from consentgate.ledger.store import Ledger
from consentgate.names import check_name
from consentgate.snapshots.debt import SnapshotDebt, snapshot_debt
from consentgate.snapshots.registry import ModelEntry, OverriddenMember, Override, Registry
from consentgate.timeutil import ensure_utc, format_instant

MAX_REASON = 2000


@dataclass(frozen=True)
class Registration:
    model: ModelEntry
    created: bool
    debts: list[SnapshotDebt] = field(default_factory=list)
    """The debt found at the training time (non-empty only under an override)."""


def refusal(what: str, debts: list[SnapshotDebt], at: datetime, *, override_hint: str) -> str:
    """The sentence a refused training run gets: count, examples and the two ways out."""
    owing = [d for d in debts if not d.empty]
    total = sum(len(d.members) for d in owing)
    parts = [f"snapshot {d.snapshot_id} holds {d.summary()}" for d in owing]
    refresh = "; ".join(
        f"`consentgate snapshot refresh {d.snapshot_id} --as-of {format_instant(at)}`" for d in owing
    )
    return (
        f"{what}: at {format_instant(at)}, {total:,} members whose data is in its snapshots had opted"
        f" out, objected or otherwise left the purpose after the snapshot was taken, and an opt-out acts"
        f" going forward: {'; '.join(parts)}. Two ways out: (1) derive snapshots without them: {refresh},"
        f" and train on those; (2) {override_hint}"
    )


def register_trained_model(
    ledger: Ledger,
    engine: DecisionEngine,
    name: str,
    snapshot_ids: list[str],
    *,
    trained_at: datetime | None = None,
    accept_debt: str | None = None,
    actor: str,
    note: str = "",
    events_dir: Path | None = None,
    override_hint: str | None = None,
) -> Registration:
    """Register model ``name`` as trained on ``snapshot_ids`` at ``trained_at`` (default: now).

    Raises DebtOutstanding when a snapshot holds members in debt at that time and ``accept_debt``
    (the override's reason) is not given; ``override_hint`` words the second way out for the
    caller's interface (default: the CLI's ``--accept-debt REASON``).
    """
    registry = Registry(ledger)
    check_name(name, what="model name")
    if not snapshot_ids:
        raise InputError("--snapshot: name at least one snapshot the model was trained on")
    if accept_debt is not None and not accept_debt.strip():
        raise InputError("--accept-debt: give the reason for the override (it is recorded and shown)")
    if accept_debt is not None and len(accept_debt) > MAX_REASON:
        raise InputError(f"--accept-debt: at most {MAX_REASON} characters, got {len(accept_debt)}")
    entries = [registry.require(s) for s in dict.fromkeys(snapshot_ids)]
    existing = registry.get_model(name)
    if existing is not None and existing.snapshot_ids == tuple(sorted(e.snapshot_id for e in entries)):
        return Registration(existing, False)
    now = ledger.clock()
    at = now if trained_at is None else ensure_utc(trained_at, field="--trained-at")
    if at > now:
        raise InputError(
            f"--trained-at: {format_instant(at)} is in the future; register a training run once it has"
            " used the snapshots"
        )
    head, _ = ledger.head()
    debts = snapshot_debt(ledger, engine, entries, at=at, watermark=head, events_dir=events_dir)
    owing = [d for d in debts if not d.empty]
    override: Override | None = None
    overridden: list[OverriddenMember] = []
    if owing:
        if accept_debt is None:
            raise DebtOutstanding(
                refusal(
                    f"model {name} not registered",
                    debts,
                    at,
                    override_hint=override_hint
                    or "register it anyway with `--accept-debt REASON` (an operator's decision,"
                    " recorded with its reason and shown in the DPO console and on each of those"
                    " members' pages)",
                ),
                sum(len(d.members) for d in owing),
            )
        overridden = [
            OverriddenMember(d.snapshot_id, m.member_id, m.reason, m.since, m.seq)
            for d in owing
            for m in d.members
        ]
        override = Override(accept_debt.strip(), actor, len({m.member_id for m in overridden}))
    model, created = registry.register_model(
        name,
        [e.snapshot_id for e in entries],
        at=now,
        note=note,
        trained_at=at,
        watermark=head,
        override=override,
        overridden=overridden,
    )
    return Registration(model, created, owing)
