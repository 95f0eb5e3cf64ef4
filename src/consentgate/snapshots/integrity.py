"""A manifest is never more than its files: the checks before publication and in ``snapshot verify``.

The engine's groups are counted on the *input* (class, category, created after T); the output files'
row counts come from their Parquet footers, and the lineage (``members.parquet``) is aggregated from
the output. Before a snapshot is published, every output file must hold exactly the rows that the
groups say its input file contributes, and the lineage must add up to the manifest's counts per
category; ``snapshot verify`` re-derives the same figures from the published files. The snapshot id
covers a digest of the outputs, so two different results never share an id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.exceptions import ChainBroken, EngineOutputError, ProofError
from consentgate.ledger.anchors import Anchor, Unusable, manifest_anchor
from consentgate.ledger.mirror import parquet_source
from consentgate.snapshots.engines.base import EngineOutput, included_rows
from consentgate.snapshots.manifest import Counts, canonical_json
from consentgate.snapshots.registry import Registry, read_manifest


def parquet_rows(path: Path, *, label: str, after: str = "; nothing published") -> int:
    """The row count in the footer of ``path``; a missing or unreadable file is an error (ending
    in ``after``: a build publishes nothing, a verification of a published snapshot says no more)."""
    if not path.is_file():
        raise EngineOutputError(f"{label}: the output file is missing{after}")
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise EngineOutputError(f"{label}: not a readable Parquet file ({exc}){after}") from exc


@dataclass(frozen=True)
class LineageTotals:
    """What ``members.parquet`` adds up to."""

    rows: int
    members: int
    records: int
    by_category: dict[str, int]


def lineage_totals(path: Path) -> LineageTotals:
    con = duckdb.connect()
    try:
        source = f"read_parquet('{_sql(path)}')"
        rows, members, records = con.execute(
            f"SELECT count(*), count(DISTINCT member_id), coalesce(sum(records), 0) FROM {source}"
        ).fetchall()[0]
        by_category = {
            str(c): int(n)
            for c, n in con.execute(f"SELECT category, sum(records) FROM {source} GROUP BY 1").fetchall()
        }
    finally:
        con.close()
    return LineageTotals(int(rows), int(members), int(records), by_category)


def check_build_outputs(
    output: EngineOutput,
    *,
    allowed: set[tuple[int, str]],
    counts: Counts,
    inputs: Sequence[Path],
    lineage: LineageTotals,
    root: Path,
) -> list[int]:
    """Check the engine's files against its own counts; returns the rows of each record file.

    Raises ``EngineOutputError`` naming the file and both figures when they differ: missing task
    output is never read as "no eligible rows".
    """
    if len(output.record_files) != len(inputs) or len(output.groups_by_file) != len(inputs):
        raise EngineOutputError(
            f"the engine returned {len(output.record_files)} output files and"
            f" {len(output.groups_by_file)} counts for {len(inputs)} input files; nothing published"
        )
    rows: list[int] = []
    for source, target, groups in zip(inputs, output.record_files, output.groups_by_file, strict=True):
        label = target.relative_to(root).as_posix()
        found = parquet_rows(target, label=label)
        expected = included_rows(groups, allowed)
        if found != expected:
            raise EngineOutputError(
                f"{label} holds {found:,} rows, but {expected:,} records of {source.name} are eligible;"
                " nothing published"
            )
        rows.append(found)
    problems = compare_lineage(lineage, counts.records_included, dict(counts.included), sum(rows))
    if problems:
        raise EngineOutputError("; ".join(problems) + "; nothing published")
    return rows


def compare_lineage(
    lineage: LineageTotals, records_included: int, by_category: Mapping[str, int], file_rows: int
) -> list[str]:
    """Differences between the lineage, the counts and the files' rows (empty when they agree)."""
    problems: list[str] = []
    if file_rows != records_included:
        problems.append(
            f"the record files hold {file_rows:,} rows, the counts say {records_included:,} are included"
        )
    if lineage.records != records_included:
        problems.append(
            f"members.parquet accounts for {lineage.records:,} records, the counts say {records_included:,}"
        )
    for category in sorted(set(lineage.by_category) | set(by_category)):
        have, want = lineage.by_category.get(category, 0), by_category.get(category, 0)
        if have != want:
            problems.append(f"members.parquet holds {have:,} records of {category}, the counts say {want:,}")
    return problems


def content_digest(outputs: Mapping[str, Any]) -> str:
    """sha256 over every output file's name, rows and sha256: what the snapshot id covers."""
    body = {
        "records": [{k: item[k] for k in ("file", "rows", "sha256")} for item in outputs["records"]],
        "members": {k: outputs["members"][k] for k in ("file", "rows", "sha256")},
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def snapshot_suffix(identity_digest: str, content: str) -> str:
    """The 12 hex digits that end a snapshot id: inputs, policy, ledger *and* output."""
    return hashlib.sha256(f"{identity_digest}:{content}".encode()).hexdigest()[:12]


def lineage_disagreements(records: Sequence[Path], lineage: Path, *, limit: int = 3) -> tuple[int, list[str]]:
    """(member, category) pairs whose record counts differ between the record files and the lineage."""
    if not records:
        return 0, []
    con = duckdb.connect()
    try:
        files = "read_parquet([" + ", ".join(f"'{_sql(p)}'" for p in records) + "])"
        query = f"""
            WITH f AS (SELECT member_id::BIGINT AS member_id, category, count(*)::BIGINT AS n
                       FROM {files} GROUP BY ALL),
                 l AS (SELECT member_id::BIGINT AS member_id, category, records::BIGINT AS n
                       FROM read_parquet('{_sql(lineage)}'))
            SELECT member_id, category, f.n, l.n FROM f FULL OUTER JOIN l USING (member_id, category)
            WHERE f.n IS DISTINCT FROM l.n ORDER BY member_id, category"""
        rows = con.execute(query).fetchall()
    except duckdb.Error as exc:
        raise ProofError(f"cannot read the snapshot's files: {exc}") from exc
    finally:
        con.close()
    shown = [
        f"member {m} {c}: {f or 0:,} records in the files, {n or 0:,} in members.parquet"
        for m, c, f, n in rows[:limit]
    ]
    return len(rows), shown


def _sql(path: Path) -> str:
    return str(path).replace("'", "''")


def manifest_anchors(registry: Registry) -> tuple[list[Anchor], list[Unusable]]:
    """Every registered snapshot whose manifest is intact pins (W, hash at W), sorted by seq.

    A manifest that is missing or changed since registration pins nothing: it comes back unusable.
    """
    found = [
        manifest_anchor(
            f"snapshot {e.snapshot_id}",
            f"{e.location}/manifest.json",
            e.manifest_sha256,
            read=lambda e=e: read_manifest(e),  # type: ignore[misc]
        )
        for e in registry.snapshots()
    ]
    anchors = sorted((a for a in found if isinstance(a, Anchor)), key=lambda a: (a.seq, a.label))
    return anchors, [a for a in found if isinstance(a, Unusable)]


def check_manifest_anchors(anchors: Sequence[Anchor], events: Sequence[Path], head: int) -> None:
    """Every anchor must agree with the verified chain (the mirror ``events``) or the ledger's head.

    Raises ``ChainBroken`` at the first anchor (by seq) that disagrees: a ledger rewritten or cut
    after a snapshot recorded its history, even when the new chain is valid in itself.
    """
    anchors = [a for a in anchors if a.seq > 0]  # watermark 0: a snapshot that saw no events
    if not anchors:
        return
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"seq": pa.array(sorted({a.seq for a in anchors}), pa.int64())}))
        chained = dict(
            con.execute(
                f"SELECT e.seq, e.hash FROM {parquet_source(events)} e SEMI JOIN wanted USING (seq)"
            ).fetchall()
        )
    finally:
        con.close()
    for anchor in anchors:
        if anchor.seq > head:
            raise ChainBroken(
                head + 1,
                f"missing: {anchor.label} recorded the ledger up to seq {anchor.seq}"
                f" (hash {anchor.hash[:12]}…), but the ledger ends at seq {head}: events were removed",
            )
        found = chained.get(anchor.seq)
        if found is not None and found != anchor.hash:
            raise ChainBroken(
                anchor.seq,
                f"changed: {anchor.label} recorded hash {anchor.hash[:12]}… at seq"
                f" {anchor.seq}, the ledger's chain has {str(found)[:12]}…: the history up to there"
                " was rewritten",
            )
