"""``snapshot refresh S [--as-of T]``: S′ = S without the records of its members in debt at T.

No raw data is read. The source's files are checked against its manifest first (a tampered source
is never refreshed). The debt relation at (T, W) comes from ``snapshots.debt`` (the build's own
eligibility code, for the members S holds who changed since); an engine then filters S's record
files with it, exactly as a build filters raw records: on DuckDB with Arrow and numpy, on Spark by
a join (an anti-join against the debt, in effect, since every other member of S keeps every
category). Each output file holds its input's remaining rows in input order, every value as S has
it. The records removed must equal the debt relation's records, the lineage is re-derived from
the new files, and the output checks of a build run before anything is published.

A full build at T and a refresh of S to T hold the same rows among the records S holds: a refresh
never adds a record, so a member who *gained* permission since S (or a record created after S's
as-of) needs a build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consentgate import __version__
from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import InputError, ProofError
from consentgate.ledger.mirror import file_sha256
from consentgate.ledger.store import Ledger
from consentgate.snapshots import openlineage as ol
from consentgate.snapshots import stores
from consentgate.snapshots.build import (
    ENGINES,
    BuildRequest,
    BuildResult,
    Out,
    ProgressFn,
    Stopwatch,
    check_spark_staging,
    checked_outputs,
    engine_settings,
    fsync_tree,
    make_engine,
    make_out_folder,
    publish,
    scratch_connection,
    verified_events,
)
from consentgate.snapshots.dataset import Dataset, InputFile, fingerprint
from consentgate.snapshots.debt import DebtMember, debt_members, prepare, read_manifest
from consentgate.snapshots.engines.base import LINEAGE_SCHEMA, Job
from consentgate.snapshots.integrity import (
    content_digest,
    snapshot_suffix,
)
from consentgate.snapshots.manifest import FORMAT, canonical_json, tally
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.snapshots.run import BuildRun
from consentgate.timeutil import ensure_utc, format_instant, to_micros

CHECKS = (
    "source_files",
    "ledger_chain",
    "manifest_anchors",
    "record_counts",
    "debt_matches_removed",
    "row_counts",
    "lineage",
)
"""What a refresh verified before it published (recorded in the manifest)."""


@dataclass(frozen=True)
class RefreshRequest:
    snapshot_id: str
    as_of: datetime | None = None
    """T (default: the ledger clock's now)."""
    out: Path | str | None = None
    """Folder (or store URI) that receives ``OUT/<id>`` (default: where the source snapshot is)."""
    engine: str = "duckdb"
    watermark: int | None = None
    spark_master: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    events_dir: Path | None = None
    lineage_url: str | None = None
    memory_limit: str = "1GB"
    reverify: bool = False
    wait: float = 0.0
    """Seconds to wait for another refresh of the same snapshot into OUT before refusing."""


@dataclass(frozen=True)
class RefreshResult:
    build: BuildResult
    source: SnapshotEntry
    removed: list[DebtMember]

    @property
    def snapshot_id(self) -> str:
        return self.build.snapshot_id


def check_source_files(entry: SnapshotEntry, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The source's manifest as registered and every file it lists intact; returns the records listed."""
    body = (entry.path / "manifest.json").read_bytes()
    if hashlib.sha256(body).hexdigest() != entry.manifest_sha256:
        raise ProofError(
            f"snapshot {entry.snapshot_id}: manifest.json changed since it was registered;"
            " a refresh derives only from an intact snapshot, nothing published"
        )
    try:
        records: list[dict[str, Any]] = list(manifest["outputs"]["records"])
        listed = [*records, manifest["outputs"]["members"]]
    except (KeyError, TypeError):
        raise ProofError(
            f"snapshot {entry.snapshot_id}: not a snapshot manifest; nothing published"
        ) from None

    def bad(item: dict[str, Any]) -> str | None:
        path = entry.path / str(item["file"])
        if not path.is_file():
            return f"{path} is missing"
        if file_sha256(path) != item["sha256"]:
            return f"{path} differs from its manifest (sha256)"
        return None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        problems = [p for p in pool.map(bad, listed) if p is not None]
    if problems:
        raise ProofError(
            f"snapshot {entry.snapshot_id}: {'; '.join(problems[:3])}"
            f"{f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''};"
            " run `consentgate snapshot verify`; nothing published"
        )
    return records


def derive_lineage(source: Path, removed: list[DebtMember], target: Path) -> None:
    """S′'s lineage: S's, less the (member, category) pairs removed, in S's order.

    Not re-aggregated from S′'s records (that read the 23M output rows again, 2-3 s at 50M): S's
    lineage matched S's records when S was built and its sha256 was checked before the refresh,
    and the output checks still compare it, per category, with what the engine counted row by row.
    """
    table = pq.read_table(source, read_dictionary=["category"])
    if [f.name for f in table.schema] != LINEAGE_SCHEMA.names:
        raise ProofError(f"{source}: not a lineage file (columns {', '.join(table.schema.names)})")
    ids = np.asarray(table["member_id"].to_numpy(), dtype=np.int64)
    owing = np.array(sorted({m.member_id for m in removed}), dtype=np.int64)
    drop = np.zeros(len(ids), dtype=bool)
    if len(owing) and len(ids):
        position = np.minimum(np.searchsorted(owing, ids), len(owing) - 1)
        candidates = np.flatnonzero(owing[position] == ids)
        pairs = {(m.member_id, c) for m in removed for c in m.categories}
        names = table["category"].take(pa.array(candidates)).to_pylist()
        for row, member, name in zip(candidates.tolist(), ids[candidates].tolist(), names, strict=True):
            drop[row] = (member, name) in pairs
    # The category stays dictionary-encoded from read to write (decoding and re-encoding 14M strings
    # cost 1.7 s at 50M); without the Arrow schema in the file it reads back as a string, as before.
    pq.write_table(table.filter(pa.array(~drop)), target, compression="zstd", store_schema=False)


def _source_dataset(entry: SnapshotEntry, records: list[dict[str, Any]]) -> Dataset:
    files: list[InputFile] = []
    schema = None
    for item in records:
        path = entry.path / str(item["file"])
        parquet = pq.ParquetFile(path)
        schema = schema or parquet.schema_arrow
        files.append(
            InputFile(
                path, parquet.metadata.num_rows, path.stat().st_size, fingerprint(path, parquet.metadata)
            )
        )
    if schema is None:
        raise ProofError(
            f"snapshot {entry.snapshot_id}: its manifest lists no record files; nothing published"
        )
    return Dataset(entry.path, files, schema, None)


def refresh_snapshot(
    request: RefreshRequest,
    *,
    ledger: Ledger,
    engine: DecisionEngine,
    progress: ProgressFn | None = None,
) -> RefreshResult:
    """Derive S′ from S at T; publish it atomically and register it as derived from S."""
    if request.engine not in ENGINES:
        raise InputError(f"--engine: expected one of {', '.join(ENGINES)}, got {request.engine!r}")
    registry = Registry(ledger)
    source = registry.require(request.snapshot_id)
    at = ledger.clock() if request.as_of is None else ensure_utc(request.as_of, field="--as-of")
    if at < source.as_of:
        raise InputError(
            f"--as-of: {format_instant(at)} is before {source.snapshot_id}'s as-of"
            f" {format_instant(source.as_of)}; a refresh only moves a snapshot forward"
        )
    head, _ = ledger.head()
    watermark = head if request.watermark is None else request.watermark
    if not source.watermark <= watermark <= head:
        raise InputError(
            f"--watermark: expected a seq between the source's watermark {source.watermark} and the"
            f" ledger's head {head}, got {watermark}"
        )
    manifest = read_manifest(source)  # on a store: its published prefix, through the local copy
    out_arg = request.out or (source.path.parent if source.uri is None else stores.parent(source.uri))
    out = make_out_folder(out_arg)
    build_request = BuildRequest(
        data=source.path,
        purpose=source.purpose,
        as_of=at,
        out=out_arg,
        engine=request.engine,
        watermark=watermark,
        spark_master=request.spark_master,
        spark_conf=request.spark_conf,
        kind=source.kind,
        events_dir=request.events_dir,
        lineage_url=request.lineage_url,
        memory_limit=request.memory_limit,
        reverify=request.reverify,
    )
    check_spark_staging(build_request, remote=source.uri is not None or out.remote)
    run = BuildRun.begin(
        ledger,
        out=out.root,
        place=out.place,
        kind="refresh",
        purpose=source.purpose,
        as_of=at,
        watermark=watermark,
        policy=engine.timeline.in_force(at),
        job_name=f"refresh.{source.purpose}",
        inputs=[
            ol.ol_input(source.where()),
            ol.ledger_dataset(ledger.engine.url.render_as_string(hide_password=True)),
        ],
        lineage_url=request.lineage_url,
        wait=request.wait,
        subject=f"{source.purpose} from {source.snapshot_id}",
    )
    try:
        result = _refresh(build_request, source, manifest, ledger, engine, at, watermark, run, progress, out)
    except BaseException:
        run.fail()
        raise
    run.done()
    result.build.warnings.extend(run.warnings)
    return result


def _refresh(
    request: BuildRequest,
    source: SnapshotEntry,
    source_manifest: dict[str, Any],
    ledger: Ledger,
    engine: DecisionEngine,
    at: datetime,
    watermark: int,
    run: BuildRun,
    progress: ProgressFn | None,
    out: Out,
) -> RefreshResult:
    work = run.folder
    watch = Stopwatch()
    lap = watch.lap

    records = check_source_files(source, source_manifest)
    dataset = _source_dataset(source, records)
    lap("source")
    events = verified_events(
        ledger, watermark, events_dir=request.events_dir, reverify=request.reverify, refusing="a refresh"
    )
    lap("mirror")
    con = scratch_connection(work, request.memory_limit)
    try:
        if progress is not None:
            progress("eligibility", 0, None)
        relation = prepare(
            con,
            engine=engine,
            events=events,
            entry=source,
            manifest=source_manifest,
            at=at,
            watermark=watermark,
            keep=True,
        )
        removed = debt_members(con, engine=engine, entry=source, at=at)
        lap("debt")
        enforcer = make_engine(request, con, work)
        output = enforcer.run(
            Job(
                dataset=dataset,
                at_us=to_micros(at),
                eligibility=work / "_eligibility",
                out=work,
                lineage=False,
            ),
            None if progress is None else (lambda done: progress("records", done, dataset.rows)),
        )
        rules = {
            (int(c), str(cat)): (bool(a), str(r), str(lr))
            for c, cat, a, r, lr in con.execute("SELECT * FROM rules").fetchall()
        }
        lap("enforce")
    finally:
        con.close()
    shutil.rmtree(work / "_scratch", ignore_errors=True)
    shutil.rmtree(work / "_eligibility", ignore_errors=True)
    counts = tally(output.groups, rules, relation.eligibility, frozenset(engine.taxonomy.categories))
    counts.by_region.clear()  # a refresh does not re-derive regions of the members it keeps
    if counts.records_in != dataset.rows:
        raise ProofError(
            f"snapshot {source.snapshot_id}: the engine counted {counts.records_in:,} records, its files"
            f" hold {dataset.rows:,}; nothing published"
        )
    owed = sum(m.records for m in removed)
    if counts.records_excluded != owed:
        raise ProofError(
            f"the refresh removed {counts.records_excluded:,} records, but the debt at"
            f" {format_instant(at)} holds {owed:,}; nothing published"
        )
    derive_lineage(source.path / "members.parquet", removed, work / "members.parquet")
    lineage, outputs = checked_outputs(output, rules, counts, dataset, work)
    lap("check")
    policy = relation.eligibility.policy
    derived_from = {
        "snapshot_id": source.snapshot_id,
        "manifest_sha256": source.manifest_sha256,
        "as_of": format_instant(source.as_of),
        "watermark": source.watermark,
        "records_as_of": source_manifest.get("derived_from", {}).get("records_as_of")
        or format_instant(source.as_of),
    }
    identity: dict[str, Any] = {
        "ledger": {
            "watermark": watermark,
            "hash_at_watermark": ledger.hash_at(watermark) if watermark else None,
        },
        "policy": None
        if policy is None
        else {"id": policy.id, "version": policy.version, "hash": policy.content_hash()},
        "governing_settings": list(relation.eligibility.governing),
        "derived_from": derived_from,
        "inputs": {"records": [f.to_dict(source.path) for f in dataset.records], "members": None},
        **engine_settings(request),
    }
    seed = {
        **identity,
        "kind": source.kind,
        "purpose": source.purpose,
        "as_of": format_instant(at),
        "engine": request.engine,
        "tool_version": __version__,
    }
    identity_digest = hashlib.sha256(canonical_json(seed)).hexdigest()
    content = content_digest(outputs)
    snapshot_id = f"{source.purpose}-{at:%Y%m%dT%H%M%SZ}-{snapshot_suffix(identity_digest, content)}"
    by_reason: dict[str, dict[str, int]] = {}
    for member in removed:
        slot = by_reason.setdefault(member.reason, {"members": 0, "records": 0})
        slot["members"] += 1
        slot["records"] += member.records
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "snapshot_id": snapshot_id,
        "kind": source.kind,
        "purpose": source.purpose,
        "as_of": format_instant(at),
        **identity,
        "identity_digest": identity_digest,
        "content_digest": content,
        "engine": request.engine,
        "tool_version": __version__,
        "member_classes": len(relation.eligibility.classes),
        "debt_removed": {
            "members": len(removed),
            "records": owed,
            "by_reason": dict(sorted(by_reason.items())),
            "members_rechecked": relation.touched,
            "policy_changed": relation.policy_changed,
        },
        "checks": list(CHECKS),
        "counts": {**counts.to_dict(), "members_included": lineage.members},
        "outputs": outputs,
    }
    body = canonical_json(manifest)
    (work / "manifest.json").write_bytes(body)
    if not out.remote:
        fsync_tree(work)
    lap("manifest")
    built = publish(
        request,
        ledger,
        manifest,
        body,
        run,
        snapshot_id,
        relation.eligibility,
        out=out,
        derived_from=source.snapshot_id,
    )
    lap("publish")
    built.timings.update(watch.timings)
    return RefreshResult(built, source, removed)
