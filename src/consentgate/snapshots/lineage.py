"""Lineage questions: whose data is in which snapshot and model, and who objected afterwards.

"Objection debt" of a snapshot (``snapshots.debt``): the members in it whose data a build now would
leave out (a governing setting switched off, an objection pending or upheld, a minor, a region, a
policy). A model's debt is the union over its snapshots. An opt-out acts only going forward; the
debt names the models that would have to be retrained or unlearned to honour it for data already
used, and no new training run may use a snapshot while it has any (``snapshots.training_runs``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.debt import snapshot_debt
from consentgate.snapshots.registry import Registry, SnapshotEntry, TrainingRead, readable
from consentgate.snapshots.stores import NotPublished, StoreError
from consentgate.timeutil import format_instant


@dataclass(frozen=True)
class MemberInSnapshot:
    snapshot: SnapshotEntry
    categories: dict[str, int]
    models: tuple[str, ...]
    reads: tuple[TrainingRead, ...] = ()
    """The training runs that read the snapshot (``consentgate.training``), in the order recorded."""

    @property
    def records(self) -> int:
        return sum(self.categories.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot.snapshot_id,
            "kind": self.snapshot.kind,
            "purpose": self.snapshot.purpose,
            "as_of": format_instant(self.snapshot.as_of),
            "records": self.records,
            "categories": self.categories,
            "models": list(self.models),
        }


@dataclass(frozen=True)
class MemberLineage:
    member_id: int
    snapshots: list[MemberInSnapshot]
    missing: list[SnapshotEntry] = field(default_factory=list)
    """Registered snapshots whose files are gone, so they could not be searched."""

    @property
    def training_runs(self) -> list[TrainingRead]:
        """Every recorded read of a snapshot that holds the member's data, in the order recorded."""
        return sorted((r for s in self.snapshots for r in s.reads), key=lambda r: (r.recorded_at, r.run_id))

    def to_dict(self, *, training_runs: bool = False) -> dict[str, Any]:
        """The lineage as JSON; ``training_runs`` adds the list of runs that read the member's data
        (off by default: the JSON API's schema for this object does not have the key yet)."""
        out: dict[str, Any] = {
            "member_id": self.member_id,
            "snapshots": [s.to_dict() for s in self.snapshots],
            "models": sorted({m for s in self.snapshots for m in s.models}),
            "unreadable_snapshots": [s.snapshot_id for s in self.missing],
        }
        if training_runs:
            out["training_runs"] = [
                {
                    "run_id": r.run_id,
                    "job": r.job,
                    "read_at": format_instant(r.read_at),
                    "snapshot_id": r.snapshot_id,
                }
                for r in self.training_runs
            ]
        return out


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def member_lineage(registry: Registry, member_id: int) -> MemberLineage:
    """Every registered snapshot that holds ``member_id``'s data, its models and the runs that read it."""
    models_of: dict[str, list[str]] = defaultdict(list)
    for model in registry.models():
        for snapshot_id in model.snapshot_ids:
            models_of[snapshot_id].append(model.name)
    found: list[MemberInSnapshot] = []
    missing: list[SnapshotEntry] = []
    con = duckdb.connect()
    try:
        for entry in registry.snapshots():
            try:
                lineage = readable(entry) / "members.parquet"
            except (NotPublished, StoreError):
                missing.append(entry)  # not published on its store, or the store does not answer
                continue
            if not lineage.is_file():
                missing.append(entry)
                continue
            rows = con.execute(
                f"SELECT category, records FROM read_parquet({_sql_path(lineage)})"
                " WHERE member_id = $1 ORDER BY category",
                [member_id],
            ).fetchall()
            if rows:
                categories = {str(c): int(n) for c, n in rows}
                found.append(MemberInSnapshot(entry, categories, tuple(sorted(models_of[entry.snapshot_id]))))
    finally:
        con.close()
    reads_of: dict[str, list[TrainingRead]] = defaultdict(list)
    if found:
        for read in registry.reads([s.snapshot.snapshot_id for s in found]):
            reads_of[read.snapshot_id].append(read)
    found = [replace(s, reads=tuple(reads_of[s.snapshot.snapshot_id])) for s in found]
    return MemberLineage(member_id, found, missing)


@dataclass(frozen=True)
class Debt:
    """One member of a snapshot whose data may no longer be used now (see ``snapshots.debt``)."""

    member_id: int
    snapshot_id: str
    what: str
    """The reason code that excludes the member now: setting_off, objection_upheld, member_minor, …"""
    detail: str
    """The member's first change after the snapshot (``kind key``), or the policy now in force."""
    effective_at: datetime
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "snapshot_id": self.snapshot_id,
            "what": self.what,
            "detail": self.detail,
            "effective_at": format_instant(self.effective_at),
            "seq": self.seq,
        }


def objection_debt(
    ledger: Ledger,
    engine: DecisionEngine,
    entries: list[SnapshotEntry],
    *,
    at: datetime | None = None,
    events_dir: Path | None = None,
) -> list[Debt]:
    """Members of ``entries`` whose data may no longer be used at ``at`` (default now), earliest first."""
    debts: list[Debt] = []
    for found in snapshot_debt(ledger, engine, entries, at=at, events_dir=events_dir):
        debts.extend(
            Debt(
                m.member_id,
                found.snapshot_id,
                m.reason,
                m.change,
                found.at if m.since is None else m.since,
                0 if m.seq is None else m.seq,
            )
            for m in found.members
        )
    return sorted(debts, key=lambda d: (d.effective_at, d.member_id, d.snapshot_id))


def model_debt(
    ledger: Ledger, engine: DecisionEngine, name: str, *, events_dir: Path | None = None
) -> list[Debt]:
    """A model's debt: per member, the earliest debt over the model's snapshots."""
    registry = Registry(ledger)
    model = registry.require_model(name)
    entries = [registry.require(s) for s in model.snapshot_ids]
    first: dict[int, Debt] = {}
    for debt in objection_debt(ledger, engine, entries, events_dir=events_dir):
        known = first.get(debt.member_id)
        if known is None or (debt.effective_at, debt.seq) < (known.effective_at, known.seq):
            first[debt.member_id] = debt
    return sorted(first.values(), key=lambda d: (d.effective_at, d.member_id))
