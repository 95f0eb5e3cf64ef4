"""May a training job read snapshot S now? Its debt must be empty, or covered by recorded overrides.

The debt is the one ``snapshots.debt`` computes (the build's own eligibility code). A read happens
when the job runs, and an opt-out acts going forward from the instant it takes effect: so the debt
is checked at the instant the job names (``at``) and, when that lies in the past, at the ledger's
clock too; a job cannot step around an opt-out by naming an earlier instant. A member in debt is
covered when an override recorded for S (``model register --accept-debt REASON``, a DPO's decision
kept with every member it covers) names them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import DebtOutstanding
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import verified_events
from consentgate.snapshots.debt import snapshot_debt
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.snapshots.training_runs import refusal


@dataclass(frozen=True)
class Clearance:
    """What the debt check found: the members in debt at the read, every one covered by an override."""

    snapshot_id: str
    watermark: int
    covered: tuple[int, ...]
    """Members in debt whose use an override recorded for the snapshot accepts."""


def override_hint(snapshot_id: str) -> str:
    return (
        "if a DPO decides the data may be used anyway, record that override by registering the model"
        f" trained on it: `consentgate model register NAME --snapshot {snapshot_id} --trained-at T"
        " --accept-debt REASON` (kept with its reason and every member it covers), then open the"
        " snapshot again"
    )


def clear_debt(
    ledger: Ledger,
    engine: DecisionEngine,
    entry: SnapshotEntry,
    *,
    at: datetime,
    now: datetime,
    watermark: int,
    events_dir: Path | None = None,
) -> Clearance:
    """Refuse (DebtOutstanding) unless every member of ``entry`` in debt at ``at`` and ``now`` is covered.

    Raises InputError when ``at`` precedes the snapshot's as-of, ChainBroken or GuardMissing when
    the ledger's events do not verify up to ``watermark``.
    """
    events = verified_events(ledger, watermark, events_dir=events_dir)
    accepted = {m.member_id for _, m in Registry(ledger).overridden(snapshot_id=entry.snapshot_id)}
    in_debt: set[int] = set()
    for instant in dict.fromkeys([at, max(at, now)]):
        [debt] = snapshot_debt(
            ledger, engine, [entry], at=instant, watermark=watermark, events_dir=events_dir, events=events
        )
        owing = [m for m in debt.members if m.member_id not in accepted]
        if owing:
            covered = len(debt.members) - len(owing)
            also = (
                ""
                if not covered
                else f" ({covered:,} more members in debt are covered by recorded overrides)"
            )
            raise DebtOutstanding(
                refusal(
                    f"snapshot {entry.snapshot_id} not opened for training{also}",
                    [replace(debt, members=owing)],
                    instant,
                    override_hint=override_hint(entry.snapshot_id),
                ),
                len(owing),
            )
        in_debt.update(m.member_id for m in debt.members)
    return Clearance(entry.snapshot_id, watermark, tuple(sorted(in_debt)))
