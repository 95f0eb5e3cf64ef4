"""``build_snapshot``: eligible records as of (T, W), a manifest, lineage, atomic publication.

The order of work: check the inputs; sync the ledger's event mirror up to W; compute eligibility
once; let the engine write the eligible records and the lineage into a hidden ``.partial`` folder;
write the manifest; then rename the folder to ``OUT/<snapshot_id>`` and register it in the same
database transaction. On an object store (``--out s3://…``, ``snapshots.stores``) the folder is
local staging, uploaded under a prefix of its own with the manifest last before the registering
transaction, and marked ``_PUBLISHED`` after it; inputs on a store (``--data s3://…``) are read
through a local copy that the build removes. The hidden folder belongs to the build's lease
(``snapshots.leases``): a build that fails removes it; one that is killed leaves it until its
lease runs out, and a later build in the same OUT (on any host) removes it then; nothing is
registered. OpenLineage events go through the outbox (``snapshots.outbox``): a lineage server that
is down never fails a build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Connection

from consentgate import __version__
from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import (
    ChainBroken,
    ConflictError,
    ConsentgateError,
    GuardMissing,
    InputError,
    one_line,
)
from consentgate.ledger.mirror import EventMirror, default_mirror_dir, file_sha256
from consentgate.ledger.store import Ledger
from consentgate.snapshots import openlineage as ol
from consentgate.snapshots import stores
from consentgate.snapshots.dataset import Dataset, check_values, open_dataset
from consentgate.snapshots.eligibility import Eligibility, compute_eligibility
from consentgate.snapshots.engines.base import EngineOutput, Job, SnapshotEngine, recorded_conf
from consentgate.snapshots.engines.duckdb_engine import DuckDBEngine
from consentgate.snapshots.integrity import (
    LineageTotals,
    check_build_outputs,
    check_manifest_anchors,
    content_digest,
    lineage_totals,
    manifest_anchors,
    parquet_rows,
    snapshot_suffix,
)
from consentgate.snapshots.manifest import FORMAT, Counts, canonical_json, file_entry, tally
from consentgate.snapshots.registry import Registry, SnapshotEntry, read_manifest
from consentgate.snapshots.run import BuildRun
from consentgate.storage import located
from consentgate.timeutil import ensure_utc, format_instant, now_utc, to_micros

log = logging.getLogger(__name__)
ENGINES = ("duckdb", "spark")
KINDS = ("snapshot", "gate")
ProgressFn = Callable[[str, int, int | None], None]
"""(phase, done, total): phases are "mirror" (events), "eligibility", "records" (input records)."""
AFTER_ENGINE: Callable[[Path], None] | None = None
"""A test hook: called with the unpublished folder after the engine wrote it, before any check."""


@dataclass(frozen=True)
class BuildRequest:
    data: Path | str
    """A local folder, or a URI of a store (``s3://bucket/network``; ``snapshots.stores``)."""
    purpose: str
    as_of: datetime
    out: Path | str
    """A local folder, or a URI of a store under which snapshots are published."""
    engine: str = "duckdb"
    watermark: int | None = None
    spark_master: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    """``--spark-conf``: cluster settings; recorded (secrets redacted) in the manifest's identity."""
    kind: str = "snapshot"
    events_dir: Path | None = None
    lineage_url: str | None = None
    memory_limit: str = "1GB"
    reverify: bool = False
    """Re-read and re-verify every ledger event up to W, not only those the mirror has not verified."""
    wait: float = 0.0
    """Seconds to wait for another build of the same result into OUT before refusing."""


@dataclass(frozen=True)
class BuildResult:
    snapshot_id: str
    path: Path
    """The snapshot's local folder (for one on an object store: the local copy readers use)."""
    manifest: dict[str, Any]
    reproduced: bool
    """True when an identical snapshot was already registered (same manifest bytes)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (for benchmarks and the CLI; not part of the manifest)."""
    warnings: list[str] = field(default_factory=list)
    """What the user should know that did not stop the build (lineage events left pending)."""
    uri: str | None = None
    """Where the snapshot is published on an object store, if it is."""

    @property
    def location(self) -> str:
        """Where the snapshot is published: its URI on a store, else its folder."""
        return self.uri if self.uri is not None else str(self.path)


def build_snapshot(
    request: BuildRequest,
    *,
    ledger: Ledger,
    engine: DecisionEngine,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build (or reproduce) the snapshot that ``request`` describes."""
    taxonomy = engine.taxonomy
    taxonomy.purpose(request.purpose)
    if request.engine not in ENGINES:
        raise InputError(f"--engine: expected one of {', '.join(ENGINES)}, got {request.engine!r}")
    if request.kind not in KINDS:
        raise InputError(f"kind: expected one of {', '.join(KINDS)}, got {request.kind!r}")
    as_of = ensure_utc(request.as_of, field="--as-of")
    head, _ = ledger.head()
    watermark = head if request.watermark is None else request.watermark
    if not 0 <= watermark <= head:
        raise InputError(
            f"--watermark: expected a seq between 0 and the ledger's head {head}, got {watermark}"
        )
    source = location_of(request.data, "--data")
    check_spark_staging(request, remote=not (source.local and location_of(request.out, "--out").local))
    out = make_out_folder(request.out)
    with staged_input(source) as root:
        dataset = open_dataset(root)
        policy = engine.timeline.in_force(as_of)
        where = ledger.engine.url.render_as_string(hide_password=True)
        records = source.child("records") if not source.local else dataset.root / "records"
        members = None if dataset.members is None else source.child("members.parquet")
        run = BuildRun.begin(
            ledger,
            out=out.root,
            place=out.place,
            kind=request.kind,
            purpose=request.purpose,
            as_of=as_of,
            watermark=watermark,
            policy=policy,
            job_name=f"{request.kind}.{request.purpose}",
            inputs=[
                ol.ol_input(records),
                *([] if members is None else [ol.ol_input(members)]),
                ol.ledger_dataset(where),
            ],
            lineage_url=request.lineage_url,
            wait=request.wait,
        )
        try:
            result = _build(request, dataset, ledger, engine, as_of, watermark, run, progress, out)
        except BaseException as exc:
            run.fail()
            if isinstance(exc, OSError):
                raise located(exc, out.root) from exc  # "cannot write OUT: No space left on device"
            raise
    run.done()
    result.warnings.extend(run.warnings)
    return result


def location_of(value: Path | str, option: str) -> stores.Location:
    """``--data`` or ``--out`` as a Location (a Path is always local)."""
    return stores.parse(str(value), option)


@contextmanager
def staged_input(source: stores.Location) -> Iterator[Path]:
    """The local folder to read ``source`` from: itself, or for a dataset on a store a copy of its
    ``records/*.parquet`` and ``members.parquet`` (removed afterwards). Errors that name the copy's
    files name them by their URI."""
    if source.local:
        yield source.local_path()
        return
    listed = [f for f in stores.files(source.child("records")) if f.name.endswith(".parquet")]
    if not listed:
        raise InputError(f"--data: no records in {source.uri}/records (expected records/*.parquet)")
    staged = stores.cache_root() / "staging" / f"input-{uuid.uuid4().hex}"
    try:
        for item in listed:
            stores.download(item, staged / "records" / item.name)
        members = source.child("members.parquet")
        if stores.is_file(members):
            stores.download(members, staged / "members.parquet")
        try:
            yield staged
        except ConsentgateError as exc:
            _rename(exc, str(staged), source.uri)
            raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _rename(exc: ConsentgateError, local: str, uri: str) -> None:
    """Name a staged copy's files in ``exc``'s message by the store's URI (where the user put them)."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (exc.args[0].replace(local, uri),)


def _build(
    request: BuildRequest,
    dataset: Dataset,
    ledger: Ledger,
    engine: DecisionEngine,
    as_of: datetime,
    watermark: int,
    run: BuildRun,
    progress: ProgressFn | None,
    out: Out,
) -> BuildResult:
    work = run.folder
    watch = Stopwatch()
    lap = watch.lap

    def report(phase: str, total: int | None) -> Callable[[int], None]:
        return lambda done: progress(phase, done, total) if progress is not None else None

    try:
        events = verified_events(
            ledger,
            watermark,
            events_dir=request.events_dir,
            reverify=request.reverify,
            progress=report("mirror", None),
            refusing="a build",
        )
    except OSError as exc:
        raise located(exc, request.events_dir or default_mirror_dir(where_of(ledger))) from exc
    lap("mirror")
    con = scratch_connection(work, request.memory_limit)
    try:
        check_values(con, dataset)
        lap("check_values")
        report("eligibility", None)(0)
        eligibility = compute_eligibility(
            con,
            engine=engine,
            events=events,
            purpose=request.purpose,
            at=as_of,
            watermark=watermark,
        )
        lap("eligibility")
        identity = _identity(request, dataset, ledger, eligibility, watermark)
        enforcer = make_engine(request, con, work)
        output = enforcer.run(
            Job(dataset=dataset, at_us=to_micros(as_of), eligibility=work / "_eligibility", out=work),
            report("records", dataset.rows),
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
    if AFTER_ENGINE is not None:
        AFTER_ENGINE(work)
    counts = tally(output.groups, rules, eligibility, frozenset(engine.taxonomy.categories))
    if counts.records_in != dataset.rows:
        raise InputError(
            f"{dataset.root}: the engine counted {counts.records_in} records, the files hold {dataset.rows}"
        )
    lineage, outputs = checked_outputs(output, rules, counts, dataset, work)
    content = content_digest(outputs)
    snapshot_id = f"{request.purpose}-{as_of:%Y%m%dT%H%M%SZ}-{snapshot_suffix(identity['digest'], content)}"
    lap("check")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "snapshot_id": snapshot_id,
        "kind": request.kind,
        "purpose": request.purpose,
        "as_of": format_instant(as_of),
        **{k: v for k, v in identity.items() if k != "digest"},
        "identity_digest": identity["digest"],
        "content_digest": content,
        "engine": request.engine,
        "tool_version": __version__,
        "member_classes": len(eligibility.classes),
        "counts": {**counts.to_dict(), "members_included": lineage.members},
        "outputs": outputs,
    }
    body = canonical_json(manifest)
    (work / "manifest.json").write_bytes(body)
    lap("manifest")
    if not out.remote:
        fsync_tree(work)
    lap("fsync")
    result = publish(request, ledger, manifest, body, run, snapshot_id, eligibility, out=out)
    lap("publish")
    result.timings.update(watch.timings)
    return result


@dataclass
class Stopwatch:
    """Seconds per phase of a run (for benchmarks and the CLI; never part of a manifest)."""

    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def lap(self, phase: str) -> None:
        """Add the time since the previous lap (or the start) to ``phase``."""
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.started
        self.started = now


def verified_events(
    ledger: Ledger,
    watermark: int,
    *,
    events_dir: Path | None = None,
    reverify: bool = False,
    progress: Callable[[int], None] | None = None,
    refusing: str | None = None,
) -> list[Path]:
    """The ledger's events up to ``watermark`` from the verified event mirror, checked against every
    registered manifest's anchor: what builds, refreshes and debt checks read.

    ``refusing`` (e.g. "a build") words a ChainBroken or GuardMissing for a run that publishes:
    nothing was published.
    """
    mirror = EventMirror(ledger, events_dir or default_mirror_dir(where_of(ledger)))
    try:
        events = mirror.sync(watermark, progress=progress, reverify=reverify)
        anchors, _ = manifest_anchors(Registry(ledger))
        check_manifest_anchors(anchors, events, ledger.head()[0])
    except ChainBroken as exc:
        if refusing is None:
            raise
        raise ChainBroken(
            exc.seq,
            f"{exc.problem}; {refusing} reads only a verified ledger, so nothing was published"
            " (`consentgate audit verify` checks the whole chain)",
        ) from None
    except GuardMissing as exc:
        if refusing is None:
            raise
        raise GuardMissing(f"{exc}; nothing was published") from None
    return events


def scratch_connection(work: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that spills to ``work/_scratch`` within ``memory_limit``."""
    scratch = work / "_scratch"
    scratch.mkdir()
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{scratch}'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def checked_outputs(
    output: EngineOutput,
    rules: dict[tuple[int, str], tuple[bool, str, str]],
    counts: Counts,
    dataset: Dataset,
    work: Path,
) -> tuple[LineageTotals, dict[str, Any]]:
    """The output checks before publication, then the manifest's ``outputs`` (names, rows, sha256).

    ``members.parquet`` must already be in ``work``; raises EngineOutputError when a file's rows,
    the lineage and the engine's counts do not agree.
    """
    members_path = work / "members.parquet"
    parquet_rows(members_path, label="members.parquet")
    lineage = lineage_totals(members_path)
    rows = check_build_outputs(
        output,
        allowed={pair for pair, (allowed, _, _) in rules.items() if allowed},
        counts=counts,
        inputs=[f.path for f in dataset.records],
        lineage=lineage,
        root=work,
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # hashlib releases the GIL
        digests = list(pool.map(file_sha256, [*output.record_files, members_path]))
    outputs: dict[str, Any] = {
        "records": [
            file_entry(f, work, n, digest)
            for f, n, digest in zip(output.record_files, rows, digests[:-1], strict=True)
        ],
        "members": file_entry(members_path, work, lineage.rows, digests[-1]),
    }
    return lineage, outputs


def where_of(ledger: Ledger) -> str:
    return ledger.engine.url.render_as_string(hide_password=False)


def _identity(
    request: BuildRequest, dataset: Dataset, ledger: Ledger, eligibility: Eligibility, watermark: int
) -> dict[str, Any]:
    policy = eligibility.policy
    identity: dict[str, Any] = {
        "ledger": {
            "watermark": watermark,
            "hash_at_watermark": ledger.hash_at(watermark) if watermark else None,
        },
        "policy": None
        if policy is None
        else {"id": policy.id, "version": policy.version, "hash": policy.content_hash()},
        "governing_settings": list(eligibility.governing),
        "inputs": {
            "records": [f.to_dict(dataset.root) for f in dataset.records],
            "members": None if dataset.members is None else dataset.members.to_dict(dataset.root),
        },
        **engine_settings(request),
    }
    seed = {
        **identity,
        "kind": request.kind,
        "purpose": request.purpose,
        "as_of": format_instant(request.as_of),
    }
    seed["engine"] = request.engine
    seed["tool_version"] = __version__  # a newer writer may lay out bytes differently
    identity["digest"] = hashlib.sha256(canonical_json(seed)).hexdigest()
    return identity


def engine_settings(request: BuildRequest) -> dict[str, Any]:
    """``{"engine_settings": …}`` when ``--spark-conf`` gave any (part of the identity: another
    cluster setting is another build), else nothing (the manifests of builds without stay as they were)."""
    if request.engine != "spark" or not request.spark_conf:
        return {}
    return {"engine_settings": recorded_conf(request.spark_conf)}


def check_spark_staging(request: BuildRequest, *, remote: bool) -> None:
    """Spark with a store URI runs only where the driver's staging folder is the executors' disk."""
    master = request.spark_master or "local[*]"
    if request.engine != "spark" or not remote or master.startswith("local"):
        return
    raise InputError(
        f"--engine spark with --spark-master {master}: inputs or OUT on an object store are staged"
        " on the driver's disk, which a cluster's executors do not see; use --spark-master local[N],"
        " or --engine duckdb, or a shared folder (docs/snapshots.md, Publication on an object store)"
    )


def make_engine(request: BuildRequest, con: duckdb.DuckDBPyConnection, work: Path) -> SnapshotEngine:
    """The engine that ``request`` names, with the eligibility tables of ``con`` (exported for Spark)."""
    if request.engine == "duckdb":
        return DuckDBEngine(con)
    if importlib.util.find_spec("pyspark") is None:
        raise InputError("--engine spark needs PySpark: pip install 'consentgate[spark]'")
    from consentgate.snapshots.engines.spark_engine import SparkEngine  # only with the extra

    folder = work / "_eligibility"
    folder.mkdir()
    con.execute(
        f"COPY (SELECT * FROM member_class ORDER BY member_id) TO '{folder / 'member_class.parquet'}'"
    )
    con.execute(f"COPY (SELECT * FROM rules ORDER BY class_id, category) TO '{folder / 'rules.parquet'}'")
    return SparkEngine(master=request.spark_master, conf=request.spark_conf)


def publish(
    request: BuildRequest,
    ledger: Ledger,
    manifest: dict[str, Any],
    body: bytes,
    run: BuildRun,
    snapshot_id: str,
    eligibility: Eligibility,
    *,
    out: Out,
    derived_from: str | None = None,
) -> BuildResult:
    """Rename the run's folder to ``OUT/<snapshot_id>`` and register it in one transaction (or
    reproduce), ending the run's lease and recording its COMPLETE event in that same transaction;
    on an object store, ``_publish_remote``."""
    work = run.folder
    registry = Registry(ledger)
    sha = hashlib.sha256(body).hexdigest()
    existing = registry.get(snapshot_id)
    if existing is not None and existing.manifest_sha256 != sha:
        raise ConflictError(
            f"snapshot {snapshot_id} is registered with another manifest"
            f" ({existing.manifest_sha256[:12]}…, now {sha[:12]}…): the build is not reproducible;"
            " nothing published"
        )
    if existing is None:
        twin = _same_inputs(registry, manifest)
        if twin is not None:
            raise ConflictError(
                f"snapshot {twin} was built from the same inputs, policy and ledger watermark but holds"
                f" other rows or bytes (content {manifest['content_digest'][:12]}… now): the build is"
                " not reproducible; nothing published"
            )
    entry = SnapshotEntry(
        snapshot_id=snapshot_id,
        kind=request.kind,
        purpose=request.purpose,
        as_of=ensure_utc(request.as_of),
        watermark=int(manifest["ledger"]["watermark"]),
        policy_ref=None if eligibility.policy is None else eligibility.policy.ref,
        engine=request.engine,
        records=int(manifest["counts"]["records_included"]),
        members=int(manifest["counts"]["members_included"]),
        manifest_sha256=sha,
        path=(out.root / snapshot_id).resolve(),
        registered_at=now_utc(),
        derived_from=derived_from,
    )
    if out.remote:
        return _publish_remote(registry, existing, entry, manifest, run, out)
    final = out.root / snapshot_id
    if existing is not None:
        with ledger.engine.begin() as conn:
            run.finish(conn, snapshot_id, stores.local(final))
            if final.exists():
                shutil.rmtree(work)
            else:
                work.rename(final)
                if not (existing.path.exists() if existing.uri is None else _intact(existing)):
                    registry.move(snapshot_id, final, conn=conn)
        return BuildResult(snapshot_id, final, manifest, reproduced=True)
    if final.exists():
        if (final / "manifest.json").is_file() and file_sha256(final / "manifest.json") == sha:
            shutil.rmtree(work)  # published earlier, registration lost: register what is there
        else:
            raise ConflictError(f"{final} exists and is not snapshot {snapshot_id}; nothing published")

    def publish(conn: Connection) -> None:
        # first: a build whose lease ran out publishes nothing
        run.finish(conn, snapshot_id, stores.local(final))
        if not final.exists():
            work.rename(final)

    try:
        registry.register(entry, publish=publish)
    except Exception as exc:
        if final.exists() and not work.exists():
            final.rename(work)
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, ConsentgateError):
            raise
        raise InputError(f"registering {snapshot_id} failed, nothing published: {one_line(exc)}") from exc
    return BuildResult(snapshot_id, final, manifest, reproduced=False)


def _intact(entry: SnapshotEntry) -> bool:
    """Whether ``entry``'s registered manifest is still where the registry says (local or store)."""
    try:
        return hashlib.sha256(read_manifest(entry)).hexdigest() == entry.manifest_sha256
    except (OSError, ConsentgateError):
        return False


def _publish_remote(
    registry: Registry,
    existing: SnapshotEntry | None,
    entry: SnapshotEntry,
    manifest: dict[str, Any],
    run: BuildRun,
    out: Out,
) -> BuildResult:
    """Publication on a store without atomic rename (docs/snapshots.md, "Publication on an object
    store"): upload under ``OUT/<snapshot_id>.<lease>`` with the manifest last; register it (the
    point of publication, with the lease's end and COMPLETE in one transaction); then write the
    ``_PUBLISHED`` marker that readers look for. An upload that fails is deleted; a marker that
    cannot be written is a warning (a later build of the same snapshot writes it)."""
    work = run.folder
    snapshot_id = entry.snapshot_id
    warnings: list[str] = []
    if existing is not None and _intact(existing):  # on a store or in a folder: it is still there
        with registry.ledger.engine.begin() as conn:
            run.finish(conn, snapshot_id, existing.where())
        if existing.uri is not None:
            warnings += _mark(existing.uri, snapshot_id, entry.manifest_sha256)
        _keep_copy(work, existing)
        return BuildResult(snapshot_id, existing.path, manifest, True, warnings=warnings, uri=existing.uri)
    prefix = out.where.child(f"{snapshot_id}.{run.lease.lease_id[:16]}")
    try:
        stores.upload_tree(work, prefix, last="manifest.json")
    except BaseException as exc:
        _delete_quietly(prefix)
        if isinstance(exc, stores.StoreError):
            raise stores.StoreError(f"{exc}; nothing published") from exc
        raise
    published = dataclasses.replace(entry, uri=prefix.uri, path=_cache(snapshot_id))

    def record(conn: Connection) -> None:
        run.finish(conn, snapshot_id, prefix)

    try:
        if existing is not None:  # registered, but its files are gone: this upload takes their place
            with registry.ledger.engine.begin() as conn:
                record(conn)
                registry.move(snapshot_id, prefix.uri, conn=conn)
        else:
            registry.register(published, publish=record)
    except Exception as exc:
        _delete_quietly(prefix)
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, ConsentgateError):
            raise
        raise InputError(f"registering {snapshot_id} failed, nothing published: {one_line(exc)}") from exc
    warnings += _mark(prefix.uri, snapshot_id, entry.manifest_sha256)
    _keep_copy(work, published)
    return BuildResult(
        snapshot_id, published.path, manifest, existing is not None, warnings=warnings, uri=prefix.uri
    )


def _cache(snapshot_id: str) -> Path:
    return stores.cache_root() / "snapshots" / snapshot_id


def _mark(uri: str, snapshot_id: str, sha: str) -> list[str]:
    """Write the ``_PUBLISHED`` marker (after the registry commit); a failure is a warning."""
    where = stores.parse(uri, "the registry's path").child(stores.PUBLISHED)
    try:
        if not stores.exists(where):
            stores.write_bytes(where, stores.marker(snapshot_id, sha))
    except stores.StoreError as exc:
        return [
            f"snapshot {snapshot_id} is registered, but its {stores.PUBLISHED} marker could not be"
            f" written ({exc}); readers refuse it until a build of the same snapshot writes the marker"
        ]
    return []


def _keep_copy(work: Path, entry: SnapshotEntry) -> None:
    """The staged folder becomes the local copy readers use (``registry.readable``)."""
    if entry.uri is None:
        shutil.rmtree(work, ignore_errors=True)
        return
    stamp = entry.path.with_name(entry.path.name + ".complete")
    stamp.unlink(missing_ok=True)
    try:
        stores.replace_folder(work, entry.path)
        stamp.write_text(entry.manifest_sha256)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)  # a cache: readers download what is not here


def _delete_quietly(prefix: stores.Location) -> None:
    """Remove a failed upload; if the store refuses that too, ``remove_stale_uploads`` does later."""
    try:
        stores.delete_folder(prefix)
    except (stores.StoreError, OSError) as exc:
        log.warning("removing the failed upload %s failed: %s", prefix.uri, one_line(exc))


def _same_inputs(registry: Registry, manifest: dict[str, Any]) -> str | None:
    """A registered snapshot with this build's identity digest but another content digest, if any."""
    as_of = manifest["as_of"]
    for entry in registry.snapshots(purpose=manifest["purpose"]):
        if format_instant(entry.as_of) != as_of:
            continue
        try:
            other = json.loads(read_manifest(entry))
        except (OSError, ValueError, ConsentgateError):
            continue  # moved, deleted or unreachable: nothing to compare with
        if (
            isinstance(other, dict)
            and other.get("identity_digest") == manifest["identity_digest"]
            and other.get("content_digest") != manifest["content_digest"]
        ):
            return entry.snapshot_id
    return None


@dataclass(frozen=True)
class Out:
    """Where a build publishes: ``where`` as the user named it, and ``root``, the local folder that
    holds the build's unpublished folder (OUT itself, or for a store a staging folder of this host)."""

    where: stores.Location
    root: Path

    @property
    def remote(self) -> bool:
        return not self.where.local

    @property
    def place(self) -> str | None:
        """What names OUT in the build's lease when it is not ``root``: the store's URI."""
        return self.where.uri if self.remote else None


def make_out_folder(out: Path | str) -> Out:
    """``--out``, created if need be; a file there is a mistake to name, not a write to try. On a
    store, a probe object is written and deleted first: a read-only or unreachable store is refused
    before any work."""
    where = location_of(out, "--out")
    if where.local:
        path = where.local_path()
        if path.exists() and not path.is_dir():
            raise InputError(f"--out: {path} is a file; expected a folder to publish snapshots in")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            exc.add_note("create the --out folder")
            raise
        return Out(where, path)
    if stores.is_file(where):
        raise InputError(f"--out: {where.uri} is an object; expected a prefix to publish snapshots under")
    stores.check_writable(where)
    return Out(where, stores.staging_for(where.uri))


def fsync_tree(folder: Path) -> None:
    """Data before name: the rename that publishes must not expose files still in the page cache."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
