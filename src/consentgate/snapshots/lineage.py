"""Lineage questions: whose data is in which snapshot and model, and who objected afterwards.

"Objection debt" of a snapshot built as of (T, W) for purpose P: the members in it who, in an event
the build could not see (effective after T, or recorded after W), switched off a setting that
governs P or filed an objection covering P. A model's debt is the union over its snapshots. An
opt-out acts only going forward; the debt names the models that would have to be retrained or
unlearned to honour it for data already used.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from consentgate.exceptions import InputError
from consentgate.ledger.events import EventKind
from consentgate.ledger.mirror import EventMirror, read_events
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.timeutil import format_instant, from_micros, to_micros


@dataclass(frozen=True)
class MemberInSnapshot:
    snapshot: SnapshotEntry
    categories: dict[str, int]
    models: tuple[str, ...]

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "snapshots": [s.to_dict() for s in self.snapshots],
            "models": sorted({m for s in self.snapshots for m in s.models}),
            "unreadable_snapshots": [s.snapshot_id for s in self.missing],
        }


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def member_lineage(registry: Registry, member_id: int) -> MemberLineage:
    """Every registered snapshot (and model) that holds ``member_id``'s data."""
    models_of: dict[str, list[str]] = defaultdict(list)
    for model in registry.models():
        for snapshot_id in model.snapshot_ids:
            models_of[snapshot_id].append(model.name)
    found: list[MemberInSnapshot] = []
    missing: list[SnapshotEntry] = []
    con = duckdb.connect()
    try:
        for entry in registry.snapshots():
            lineage = entry.path / "members.parquet"
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
    return MemberLineage(member_id, found, missing)


@dataclass(frozen=True)
class Debt:
    """One member's first opt-out or objection that a snapshot (or a model's snapshots) predates."""

    member_id: int
    snapshot_id: str
    what: str
    detail: str
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


def _governing(entry: SnapshotEntry) -> list[str]:
    manifest = json.loads((entry.path / "manifest.json").read_text())
    return [str(k) for k in manifest.get("governing_settings", [])]


def objection_debt(registry: Registry, mirror: EventMirror, entries: list[SnapshotEntry]) -> list[Debt]:
    """Members of ``entries`` who opted out or objected after each snapshot's (T, W), earliest first."""
    head, _ = mirror.ledger.head()
    events = mirror.sync(head)
    objections = _objections(events)
    debts: list[Debt] = []
    con = duckdb.connect()
    try:
        con.register("objections", objections)
        source = (
            f"read_parquet([{', '.join(_sql_path(p) for p in events)}])"
            if events
            else "(SELECT NULL::BIGINT member_id, NULL key, NULL value, NULL::BIGINT effective_at,"
            " NULL::BIGINT seq, NULL kind WHERE false)"
        )
        for entry in entries:
            lineage = entry.path / "members.parquet"
            if not lineage.is_file():
                raise InputError(
                    f"snapshot {entry.snapshot_id}: {lineage} is missing; cannot compute its debt"
                )
            keys = ", ".join(f"'{k}'" for k in _governing(entry)) or "NULL"
            at, mark = to_micros(entry.as_of), entry.watermark
            rows = con.execute(
                f"""
                WITH members AS (SELECT DISTINCT member_id FROM read_parquet({_sql_path(lineage)})),
                later AS (
                  SELECT member_id, 'setting_off' AS what, key AS detail, effective_at, seq FROM {source}
                  WHERE kind = '{EventKind.setting_changed}' AND key IN ({keys}) AND value = 'false'
                    AND (effective_at > {at} OR seq > {mark})
                  UNION ALL
                  SELECT member_id, 'objection' AS what, reference AS detail, effective_at, seq
                  FROM objections
                  WHERE list_contains(purposes, $1) AND (effective_at > {at} OR seq > {mark})
                )
                SELECT member_id, arg_min(what, (effective_at, seq)), arg_min(detail, (effective_at, seq)),
                       min(effective_at), arg_min(seq, (effective_at, seq))
                FROM later SEMI JOIN members USING (member_id)
                GROUP BY member_id ORDER BY min(effective_at), member_id
                """,
                [entry.purpose],
            ).fetchall()
            debts.extend(
                Debt(int(m), entry.snapshot_id, str(w), str(d), from_micros(int(e)), int(s))
                for m, w, d, e, s in rows
            )
    finally:
        con.close()
    return debts


def _objections(files: list[Path]) -> pa.Table:
    """Every objection received, from the verified mirror."""
    events = read_events(files, "kind = ?", [str(EventKind.objection_received)])
    return pa.table(
        {
            "member_id": pa.array([e.member_id for e in events], pa.int64()),
            "reference": pa.array([e.key for e in events], pa.string()),
            "purposes": pa.array([json.loads(e.value)["purposes"] for e in events], pa.list_(pa.string())),
            "effective_at": pa.array([e.effective_at for e in events], pa.int64()),
            "seq": pa.array([e.seq for e in events], pa.int64()),
        }
    )


def model_debt(registry: Registry, mirror: EventMirror, name: str) -> list[Debt]:
    """A model's debt: per member, the earliest debt over the model's snapshots."""
    model = registry.require_model(name)
    entries = [registry.require(s) for s in model.snapshot_ids]
    first: dict[int, Debt] = {}
    for debt in objection_debt(registry, mirror, entries):
        known = first.get(debt.member_id)
        if known is None or (debt.effective_at, debt.seq) < (known.effective_at, known.seq):
            first[debt.member_id] = debt
    return sorted(first.values(), key=lambda d: (d.effective_at, d.member_id))
