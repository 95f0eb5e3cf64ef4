"""``open_snapshot``: a registered, intact, debt-free snapshot as a ``pyarrow.dataset.Dataset``.

In order, each refusal a sentence naming what to do: the snapshot must be registered
(NotFoundError); built for the purpose the job trains for (InputError); its files must be what its
manifest lists, hashes, row counts, lineage and id re-derived (``snapshot verify``; ProofError); and
no member of it may be in debt at the read unless a recorded override covers them
(``training.clearance``; DebtOutstanding). Only then is the read recorded (``training_reads``) and
the dataset built, from exactly the record files the manifest lists, never from a folder listing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict, Unpack

import pyarrow.dataset as ds

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import InputError, NotFoundError, ProofError
from consentgate.ledger.database import DEFAULT_URL
from consentgate.ledger.store import Ledger
from consentgate.policy import load_timeline
from consentgate.snapshots import openlineage as ol
from consentgate.snapshots.registry import Registry, SnapshotEntry, TrainingRead, readable
from consentgate.snapshots.verify import verify_snapshot
from consentgate.taxonomy import load_taxonomy
from consentgate.timeutil import ensure_utc, format_instant, parse_instant
from consentgate.training.clearance import clear_debt
from consentgate.training.reads import job_label, new_run_id, read_run

Instant = str | datetime


@dataclass(frozen=True)
class VerifiedSnapshot:
    """One verified, recorded read: the dataset and what the ledger now holds about the read."""

    dataset: ds.Dataset
    entry: SnapshotEntry
    files: tuple[Path, ...]
    """The record files the manifest lists, in its order: the only files ``dataset`` reads."""
    read: TrainingRead
    """The row of ``training_reads`` (its ``run_id`` is the OpenLineage run id)."""

    @property
    def run_id(self) -> str:
        return self.read.run_id


class OpenOptions(TypedDict, total=False):
    """The keyword arguments of ``open_snapshot`` besides ``purpose``, which every helper passes on."""

    at: Instant | None
    db: str | None
    job: str | None
    events_dir: Path | None
    lineage_url: str | None


def open_snapshot(snapshot_id: str, *, purpose: str, **options: Unpack[OpenOptions]) -> ds.Dataset:
    """The records of ``snapshot_id`` for a job training for ``purpose``, after every check.

    The options are those of ``open_snapshot_run``, which does the same and also returns the
    recorded read (its run id).
    """
    return open_snapshot_run(snapshot_id, purpose=purpose, **options).dataset


def open_snapshot_run(
    snapshot_id: str,
    *,
    purpose: str,
    at: Instant | None = None,
    db: str | None = None,
    job: str | None = None,
    events_dir: Path | None = None,
    lineage_url: str | None = None,
) -> VerifiedSnapshot:
    """Verify ``snapshot_id`` for ``purpose`` at ``at`` (default now), record the read, open its records.

    ``db``: the ledger URL or SQLite path (default ``CONSENTGATE_DB``, else the CLI's default);
    ``job``: the name the read is recorded under (default ``training``); ``events_dir``: the event
    mirror (default beside the ledger, as for builds); ``lineage_url``: the OpenLineage endpoint
    (default ``OPENLINEAGE_URL``, else ``openlineage.jsonl`` beside the snapshot folder).
    """
    label = job_label(job)
    wanted = None if at is None else _instant(at)
    ledger = Ledger.open(db or os.environ.get("CONSENTGATE_DB", DEFAULT_URL))
    try:
        return _open(
            ledger,
            default_engine(),
            snapshot_id,
            purpose=purpose,
            at=wanted,
            job=label,
            events_dir=events_dir,
            lineage_url=lineage_url,
        )
    finally:
        ledger.close()


def default_engine() -> DecisionEngine:
    """The CLI's engine: the built-in policies and the folders of ``CONSENTGATE_POLICY_DIR``."""
    folders = [Path(p) for p in os.environ.get("CONSENTGATE_POLICY_DIR", "").split(os.pathsep) if p]
    return DecisionEngine(load_taxonomy(), load_timeline(folders, include_builtin=True))


def _instant(value: Instant) -> datetime:
    if isinstance(value, datetime):
        return ensure_utc(value, field="at")
    if isinstance(value, str):
        return parse_instant(value, field="at")
    raise InputError(f"at: expected an ISO 8601 string or a datetime, got {type(value).__name__}")


def _open(
    ledger: Ledger,
    engine: DecisionEngine,
    snapshot_id: str,
    *,
    purpose: str,
    at: datetime | None,
    job: str,
    events_dir: Path | None,
    lineage_url: str | None,
) -> VerifiedSnapshot:
    registry = Registry(ledger)
    where = ledger.engine.url.render_as_string(hide_password=True)
    entry = registry.get(snapshot_id)
    if entry is None:
        raise NotFoundError(
            f"snapshot {snapshot_id!r} is not registered in the ledger at {where}, so no training job"
            " may read it (`consentgate snapshot list` shows the registered ones)"
        )
    now = ledger.clock()
    read_at = now if at is None else at
    if read_at > now:
        raise InputError(
            f"at: {format_instant(read_at)} is in the future; a training job reads a snapshot when it"
            " runs (leave at out for now)"
        )
    watermark, _ = ledger.head()
    run = read_run(
        entry,
        run_id=new_run_id(),
        job=job,
        facet=ol.run_facet(
            purpose=purpose,
            policy=engine.timeline.in_force(read_at),
            as_of=read_at,
            watermark=watermark,
            snapshot_id=entry.snapshot_id,
        ),
        ledger_where=where,
        lineage_url=lineage_url,
    )
    run.start()
    try:
        _check_purpose(entry, purpose)
        files = _verified_files(entry)
        clearance = clear_debt(
            ledger, engine, entry, at=read_at, now=now, watermark=watermark, events_dir=events_dir
        )
        dataset = ds.dataset([str(p) for p in files], format="parquet")
        read = TrainingRead(
            run_id=run.run_id,
            snapshot_id=entry.snapshot_id,
            purpose=purpose,
            read_at=read_at,
            watermark=watermark,
            job=job,
            covered_by_override=len(clearance.covered),
            recorded_at=ledger.clock(),
        )
        registry.record_read(read)
    except BaseException:
        run.fail()
        raise
    run.complete()
    return VerifiedSnapshot(dataset, entry, files, read)


def _check_purpose(entry: SnapshotEntry, purpose: str) -> None:
    if purpose != entry.purpose:
        raise InputError(
            f"purpose: snapshot {entry.snapshot_id} was built for {entry.purpose}, not for {purpose!r};"
            " members' choices are decided per purpose, so a snapshot may train only for its own"
            f" (build one for it: `consentgate snapshot build --purpose {purpose} ...`)"
        )


def _verified_files(entry: SnapshotEntry) -> tuple[Path, ...]:
    """The record files of ``entry`` after ``verify_snapshot``, from a manifest read once more."""
    root = readable(entry) if entry.uri is not None else None  # on a store: the local copy is checked
    result = verify_snapshot(entry, root=root)
    if not result.ok:
        raise ProofError(
            f"snapshot {entry.snapshot_id} is not what its manifest says, so it was not opened:"
            f" {'; '.join(result.problems)} (rebuild it, or restore its files;"
            f" `consentgate snapshot verify {entry.snapshot_id}` repeats the check)"
        )
    # Read again and pinned to the registered hash: what lists the files is what was verified.
    body = ((root or entry.path) / "manifest.json").read_bytes()
    if hashlib.sha256(body).hexdigest() != entry.manifest_sha256:
        raise ProofError(f"snapshot {entry.snapshot_id}: manifest.json changed while it was being verified")
    return record_files(entry, json.loads(body))


def record_files(entry: SnapshotEntry, manifest: dict[str, Any]) -> tuple[Path, ...]:
    """The absolute paths of the manifest's record files, each inside the snapshot folder."""
    root = entry.path.resolve()
    try:
        names = [item["file"] for item in manifest["outputs"]["records"]]
    except (KeyError, TypeError) as exc:
        raise ProofError(
            f"snapshot {entry.snapshot_id}: the manifest lists no record files ({exc})"
        ) from None
    if not names:
        raise ProofError(f"snapshot {entry.snapshot_id}: the manifest lists no record files")
    files: list[Path] = []
    for name in names:
        relative = PurePosixPath(str(name))
        path = (root / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or not path.is_relative_to(root):
            raise ProofError(
                f"snapshot {entry.snapshot_id}: the manifest lists {name!r}, outside the snapshot folder"
            )
        files.append(path)
    return tuple(files)
