"""A snapshot's debt at T: the (member, category) pairs it holds that may no longer be used at T.

An opt-out or an objection acts going forward (DOMAIN §1.3): training already done stays, every use
after it must leave the member out. A snapshot S was decided as of (``S.as_of``, ``S.watermark``);
at a later instant T (with the ledger read up to W) a pair of S is *in debt* when a build at (T, W)
would not include it: a governing setting switched off, an objection pending or upheld, a "believed
minor" signal, a move to a region that excludes the member, an account closed, or a policy in force
at T that no longer allows it. A model may be registered as trained on S at T, a training job may
read S at T, only when that debt is empty (or a recorded override covers it); ``snapshot refresh``
removes it.

The relation is computed with the build's own eligibility code, never a second set of rules: a
member's decision can change between ``S.as_of`` and T only through one of their events recorded
after S's watermark or effective after its as-of (the *touched* members), or through another policy
in force at T (then every member of S is re-decided). Time alone only widens: a minor turns 18.
So only the touched members are classified at (T, W), by ``compute_eligibility``; every other member
of S keeps what S holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import InputError
from consentgate.ledger.mirror import parquet_source
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import verified_events
from consentgate.snapshots.eligibility import UNKNOWN_CATEGORY, Eligibility, MemberClass, compute_eligibility
from consentgate.snapshots.registry import SnapshotEntry, readable
from consentgate.timeutil import ensure_utc, format_instant, from_micros, to_micros

KEEP_SIGNATURE = "unchanged since the source snapshot"
EXAMPLES = 5


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def read_manifest(entry: SnapshotEntry) -> dict[str, Any]:
    path = readable(entry) / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"snapshot {entry.snapshot_id}: {path} is unreadable ({exc})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"snapshot {entry.snapshot_id}: {path} is not a snapshot manifest")
    return manifest


def _lineage(entry: SnapshotEntry) -> Path:
    lineage = readable(entry) / "members.parquet"
    if not lineage.is_file():
        raise InputError(
            f"snapshot {entry.snapshot_id}: {lineage} is missing; its debt cannot be computed"
            " (fail closed: nothing may use it)"
        )
    return lineage


@dataclass(frozen=True)
class Relation:
    """What ``prepare`` left in the connection: ``member_class`` and ``rules`` at (T, W)."""

    eligibility: Eligibility
    touched: int
    policy_changed: bool
    keep_class: int | None


def policy_changed(engine: DecisionEngine, manifest: dict[str, Any], at: datetime) -> bool:
    """Whether the policy in force at ``at`` differs from the one the snapshot was decided under."""
    policy = engine.timeline.in_force(at)
    recorded = manifest.get("policy")
    if policy is None or recorded is None:
        return (policy is None) != (recorded is None)
    return bool(recorded.get("hash") != policy.content_hash())


def _source_members(lineage: Path) -> pa.Table:
    """The distinct members of a lineage file (sorted by member, as every engine writes it)."""
    ids = np.asarray(pq.read_table(lineage, columns=["member_id"])["member_id"].to_numpy(), dtype=np.int64)
    if len(ids) > 1 and not bool((ids[1:] >= ids[:-1]).all()):
        ids = np.sort(ids)
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return pa.table({"member_id": pa.array(ids[keep], pa.int64())})


def prepare(
    con: duckdb.DuckDBPyConnection,
    *,
    engine: DecisionEngine,
    events: list[Path],
    entry: SnapshotEntry,
    manifest: dict[str, Any],
    at: datetime,
    watermark: int,
    keep: bool,
) -> Relation:
    """Decide the touched members of ``entry`` at (``at``, ``watermark``) into ``member_class``/``rules``.

    Only the touched members are classified (``compute_eligibility(only=...)``). With ``keep``, every
    other member of the snapshot goes into one more class that allows every category of the
    taxonomy: the relation then says, for every record of the snapshot, whether a build at (T, W)
    would include it, and an engine can filter the snapshot's files with it.
    """
    lineage = _lineage(entry)
    con.register("source_members_src", _source_members(lineage))
    con.execute("CREATE OR REPLACE TEMP TABLE source_members AS SELECT * FROM source_members_src")
    con.unregister("source_members_src")
    changed = policy_changed(engine, manifest, at)
    # The changes S could not see: effective after its as-of or recorded after its watermark.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE later_events AS
        SELECT e.member_id, e.kind, e.key, e.effective_at, e.seq FROM {parquet_source(events)} e
        SEMI JOIN source_members s ON s.member_id = e.member_id
        WHERE e.seq <= {int(watermark)} AND e.effective_at <= {to_micros(at)}
          AND (e.effective_at > {to_micros(entry.as_of)} OR e.seq > {int(entry.watermark)})"""
    )
    if changed:
        con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT member_id FROM source_members")
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT member_id FROM later_events")
    touched = int(con.execute("SELECT count(*) FROM touched").fetchall()[0][0])
    eligibility = compute_eligibility(
        con,
        engine=engine,
        events=events,
        purpose=entry.purpose,
        at=at,
        watermark=watermark,
        only="touched",
    )
    keep_class: int | None = None
    if keep:
        keep_class = max(c.class_id for c in eligibility.classes) + 1
        con.execute(
            f"""INSERT INTO member_class
            SELECT member_id, {keep_class}::INTEGER FROM source_members ANTI JOIN touched USING (member_id)"""
        )
        categories = sorted(engine.taxonomy.categories)
        con.executemany(
            "INSERT INTO rules VALUES (?, ?, true, '', 'record_after_as_of')",
            [[keep_class, c] for c in categories],
        )
        con.execute(
            f"INSERT INTO rules VALUES ({keep_class}, '{UNKNOWN_CATEGORY}', false, 'unknown_category',"
            " 'unknown_category')"
        )
        kept = int(
            con.execute(f"SELECT count(*) FROM member_class WHERE class_id = {keep_class}").fetchall()[0][0]
        )
        eligibility.classes.append(MemberClass(keep_class, KEEP_SIGNATURE, None, kept, None))
    return Relation(eligibility, touched, changed, keep_class)


@dataclass(frozen=True)
class DebtMember:
    """One member of a snapshot whose data may no longer be used at T."""

    member_id: int
    reason: str
    """The reason code that excludes the most of the member's records (e.g. ``setting_off``)."""
    categories: tuple[str, ...]
    records: int
    since: datetime | None
    """When the member's first change after the snapshot took effect (None: the policy changed)."""
    seq: int | None
    change: str
    """That change: the event's key (the setting, the objection's reference, ``country``, …), or
    the policy now in force."""
    change_kind: str
    """The event's kind (``setting_changed``, ``objection_received``, ``member_fact``, …) or ``policy``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "reason": self.reason,
            "categories": list(self.categories),
            "records": self.records,
            "since": None if self.since is None else format_instant(self.since),
            "seq": self.seq,
            "change": self.change,
            "change_kind": self.change_kind,
        }


@dataclass(frozen=True)
class SnapshotDebt:
    snapshot_id: str
    purpose: str
    at: datetime
    watermark: int
    policy_changed: bool
    touched: int
    """Members of the snapshot with an event after it (all of them when the policy changed)."""
    members: list[DebtMember]

    @property
    def records(self) -> int:
        return sum(m.records for m in self.members)

    @property
    def empty(self) -> bool:
        return not self.members

    def by_reason(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for m in self.members:
            slot = out.setdefault(m.reason, {"members": 0, "records": 0})
            slot["members"] += 1
            slot["records"] += m.records
        return dict(sorted(out.items()))

    def summary(self, examples: int = EXAMPLES) -> str:
        """``1,956 members (4,210 records): setting_off 1,900, objection_upheld 56; e.g. member 12 …``."""
        reasons = ", ".join(f"{k} {v['members']:,}" for k, v in self.by_reason().items())
        shown = "; ".join(
            f"member {m.member_id} ({m.reason}"
            + ("" if m.since is None else f" since {format_instant(m.since)}")
            + ")"
            for m in self.members[:examples]
        )
        return f"{len(self.members):,} members ({self.records:,} records): {reasons}; e.g. {shown}"

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        listed = self.members if limit is None else self.members[:limit]
        return {
            "snapshot_id": self.snapshot_id,
            "purpose": self.purpose,
            "at": format_instant(self.at),
            "watermark": self.watermark,
            "policy_changed": self.policy_changed,
            "members_touched": self.touched,
            "members": len(self.members),
            "records": self.records,
            "by_reason": self.by_reason(),
            "debt": [m.to_dict() for m in listed],
            "debt_not_listed": len(self.members) - len(listed),
        }


def debt_members(
    con: duckdb.DuckDBPyConnection, *, engine: DecisionEngine, entry: SnapshotEntry, at: datetime
) -> list[DebtMember]:
    """The members of ``entry`` in debt, from the tables ``prepare`` left in ``con`` (``touched``,
    ``member_class``, ``rules``, ``later_events``), with each member's first change after it."""
    lineage = _lineage(entry)
    known = ", ".join("'" + c.replace("'", "''") + "'" for c in sorted(engine.taxonomy.categories)) or "NULL"
    rows = con.execute(
        f"""
        WITH pairs AS (
          SELECT l.member_id::BIGINT AS member_id, l.category, l.records, r.reason
          FROM read_parquet({_sql_path(lineage)}) l
          SEMI JOIN touched t ON t.member_id = l.member_id
          LEFT JOIN member_class mc ON mc.member_id = l.member_id
          JOIN rules r ON r.class_id = coalesce(mc.class_id, 0)
            AND r.category = CASE WHEN l.category IN ({known}) THEN l.category ELSE '{UNKNOWN_CATEGORY}' END
          WHERE NOT r.allowed
        ),
        debt AS (
          SELECT member_id, arg_max(reason, (records, reason)) AS reason,
                 list(category ORDER BY category) AS cats,
                 sum(records)::BIGINT AS records
          FROM pairs GROUP BY member_id
        ),
        first_change AS (
          SELECT e.member_id, min(e.effective_at) AS since,
                 arg_min(e.seq, (e.effective_at, e.seq)) AS seq,
                 arg_min(e.key, (e.effective_at, e.seq)) AS change,
                 arg_min(e.kind, (e.effective_at, e.seq)) AS change_kind
          FROM later_events e SEMI JOIN debt d ON d.member_id = e.member_id
          GROUP BY e.member_id
        )
        SELECT d.member_id, d.reason, d.cats, d.records, f.since, f.seq, f.change, f.change_kind
        FROM debt d LEFT JOIN first_change f USING (member_id)
        ORDER BY f.since NULLS FIRST, d.member_id
        """
    ).fetchall()
    policy = engine.timeline.in_force(at)
    in_force = "no policy in force" if policy is None else f"policy {policy.ref} in force"
    return [
        DebtMember(
            member_id=int(m),
            reason=str(reason),
            categories=tuple(str(c) for c in cats),
            records=int(n),
            since=None if since is None else from_micros(int(since)),
            seq=None if seq is None else int(seq),
            change=in_force if change is None else str(change),
            change_kind="policy" if kind is None else str(kind),
        )
        for m, reason, cats, n, since, seq, change, kind in rows
    ]


def snapshot_debt(
    ledger: Ledger,
    engine: DecisionEngine,
    entries: list[SnapshotEntry],
    *,
    at: datetime | None = None,
    watermark: int | None = None,
    events_dir: Path | None = None,
    events: list[Path] | None = None,
) -> list[SnapshotDebt]:
    """Each snapshot's debt at (``at``, ``watermark``); defaults: now and the ledger's head.

    Raises InputError when ``at`` precedes a snapshot's as-of (no one can train on it before then).
    """
    at = ledger.clock() if at is None else ensure_utc(at, field="at")
    head, _ = ledger.head()
    watermark = head if watermark is None else watermark
    if not 0 <= watermark <= head:
        raise InputError(f"watermark: expected a seq between 0 and the ledger's head {head}, got {watermark}")
    for entry in entries:
        if at < entry.as_of:
            raise InputError(
                f"{format_instant(at)} is before snapshot {entry.snapshot_id}'s as-of"
                f" {format_instant(entry.as_of)}: a training run cannot use it before then"
            )
    if events is None:
        events = verified_events(ledger, watermark, events_dir=events_dir)
    out: list[SnapshotDebt] = []
    for entry in entries:
        manifest = read_manifest(entry)
        con = duckdb.connect()
        try:
            relation = prepare(
                con,
                engine=engine,
                events=events,
                entry=entry,
                manifest=manifest,
                at=at,
                watermark=watermark,
                keep=False,
            )
            members = debt_members(con, engine=engine, entry=entry, at=at)
        finally:
            con.close()
        out.append(
            SnapshotDebt(
                entry.snapshot_id,
                entry.purpose,
                at,
                watermark,
                relation.policy_changed,
                relation.touched,
                members,
            )
        )
    return out
