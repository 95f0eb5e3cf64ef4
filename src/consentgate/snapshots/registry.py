"""The lineage registry in the ledger database: snapshots, models, and which snapshots fed which model."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from consentgate.exceptions import ConflictError, InputError, NotFoundError
from consentgate.ledger.schema import debt_overrides, model_snapshots, models, snapshots, training_reads
from consentgate.ledger.store import Ledger
from consentgate.snapshots import stores
from consentgate.timeutil import from_micros, to_micros


@dataclass(frozen=True)
class SnapshotEntry:
    snapshot_id: str
    kind: str
    purpose: str
    as_of: datetime
    watermark: int
    policy_ref: str | None
    engine: str
    records: int
    members: int
    manifest_sha256: str
    path: Path
    registered_at: datetime
    derived_from: str | None = None
    """The snapshot this one was refreshed from (``snapshot refresh``), if any."""
    uri: str | None = None
    """Where the snapshot is published on an object store (``s3://bucket/prefix``); then ``path``
    is the local copy readers use (``readable``). None for a snapshot in a local folder."""

    @property
    def location(self) -> str:
        """What the registry records: the URI on an object store, else the local path."""
        return self.uri if self.uri is not None else str(self.path)

    def where(self) -> stores.Location:
        """Where the snapshot is published, as a Location (for OpenLineage's dataset names)."""
        return stores.local(self.path) if self.uri is None else stores.parse(self.uri, "the registry's path")

    @classmethod
    def from_row(cls, row: Any) -> SnapshotEntry:
        remote = stores.is_uri(row.path)
        return cls(
            snapshot_id=row.snapshot_id,
            kind=row.kind,
            purpose=row.purpose,
            as_of=from_micros(row.as_of),
            watermark=int(row.watermark),
            policy_ref=row.policy_ref,
            engine=row.engine,
            records=int(row.records),
            members=int(row.members),
            manifest_sha256=row.manifest_sha256,
            path=stores.cache_root() / "snapshots" / row.snapshot_id if remote else Path(row.path),
            registered_at=from_micros(row.registered_at),
            derived_from=row.derived_from,
            uri=row.path if remote else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "kind": self.kind,
            "purpose": self.purpose,
            "as_of": self.as_of.isoformat(),
            "watermark": self.watermark,
            "policy": self.policy_ref,
            "engine": self.engine,
            "records": self.records,
            "members": self.members,
            "manifest_sha256": self.manifest_sha256,
            "path": self.location,
            "registered_at": self.registered_at.isoformat(),
            "derived_from": self.derived_from,
        }


def readable(entry: SnapshotEntry, *, fresh: bool = False) -> Path:
    """The local folder that holds ``entry``'s files: its own folder, or for a snapshot on an object
    store a local copy of its published prefix (downloaded once per manifest; ``fresh`` downloads
    anew into a folder of its own, for ``verify``). NotPublished when the prefix has no marker."""
    if entry.uri is None:
        return entry.path
    where = stores.parse(entry.uri, "the registry's path")
    if not stores.exists(where.child(stores.PUBLISHED)):
        raise stores.NotPublished(
            f"snapshot {entry.snapshot_id}: {entry.uri} has no {stores.PUBLISHED} marker, so it is not"
            " published there (its upload or the marker after its registration did not finish); build it"
            " again to publish it"
        )
    stamp = entry.path.with_name(entry.path.name + ".complete")
    if not fresh and stamp.is_file() and stamp.read_text() == entry.manifest_sha256 and entry.path.is_dir():
        return entry.path
    staged = entry.path.with_name(f".{entry.path.name}.{uuid.uuid4().hex}.download")
    try:
        stores.download_tree(where, staged, skip=[stores.PUBLISHED])
        if fresh:
            return staged
        stamp.unlink(missing_ok=True)
        try:
            stores.replace_folder(staged, entry.path)
        except OSError:  # another reader put its copy there first
            if not entry.path.is_dir():
                raise
        stamp.write_text(entry.manifest_sha256)
    finally:
        if not fresh and staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return entry.path


def read_manifest(entry: SnapshotEntry) -> bytes:
    """``entry``'s ``manifest.json`` as it is now where the registry says (on a store: its prefix,
    marker or not; the local copy when it holds the registered manifest). OSError or StoreError."""
    if entry.uri is None:
        return (entry.path / "manifest.json").read_bytes()
    stamp = entry.path.with_name(entry.path.name + ".complete")
    cached = entry.path / "manifest.json"
    if stamp.is_file() and stamp.read_text() == entry.manifest_sha256 and cached.is_file():
        return cached.read_bytes()
    return stores.read_bytes(stores.parse(entry.uri, "the registry's path").child("manifest.json"))


@dataclass(frozen=True)
class Override:
    """Registered despite a debt: who decided it, why, and how many members it covers."""

    reason: str
    by: str
    members: int


@dataclass(frozen=True)
class OverriddenMember:
    """One member a model was trained on after their opt-out, under its override."""

    snapshot_id: str
    member_id: int
    reason: str
    since: datetime | None
    seq: int | None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    registered_at: datetime
    note: str
    snapshot_ids: tuple[str, ...]
    trained_at: datetime | None = None
    """When the training used the snapshots (``--trained-at``; the registration for older models)."""
    watermark: int | None = None
    """The ledger head the registration checked the debt against."""
    override: Override | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "snapshots": list(self.snapshot_ids),
            "note": self.note,
            "registered_at": self.registered_at.isoformat(),
            "trained_at": None if self.trained_at is None else self.trained_at.isoformat(),
            "watermark": self.watermark,
            "override": None
            if self.override is None
            else {"reason": self.override.reason, "by": self.override.by, "members": self.override.members},
        }

    @classmethod
    def from_row(cls, row: Any, snapshot_ids: tuple[str, ...]) -> ModelEntry:
        override = (
            None
            if row.override_reason is None
            else Override(row.override_reason, row.override_by or "", int(row.debt_members))
        )
        return cls(
            name=row.name,
            registered_at=from_micros(row.registered_at),
            note=row.note,
            snapshot_ids=snapshot_ids,
            trained_at=None if row.trained_at is None else from_micros(row.trained_at),
            watermark=None if row.watermark is None else int(row.watermark),
            override=override,
        )


@dataclass(frozen=True)
class TrainingRead:
    """One read of a snapshot by a training job (``consentgate.training.open_snapshot``)."""

    run_id: str
    snapshot_id: str
    purpose: str
    read_at: datetime
    watermark: int
    job: str
    covered_by_override: int
    recorded_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "snapshot_id": self.snapshot_id,
            "purpose": self.purpose,
            "read_at": self.read_at.isoformat(),
            "watermark": self.watermark,
            "job": self.job,
            "covered_by_override": self.covered_by_override,
            "recorded_at": self.recorded_at.isoformat(),
        }


class Registry:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def get(self, snapshot_id: str) -> SnapshotEntry | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(snapshots).where(snapshots.c.snapshot_id == snapshot_id)).first()
        return None if row is None else SnapshotEntry.from_row(row)

    def require(self, snapshot_id: str) -> SnapshotEntry:
        entry = self.get(snapshot_id)
        if entry is None:
            raise NotFoundError(
                f"no snapshot {snapshot_id!r} is registered (see `consentgate snapshot list`)"
            )
        return entry

    def snapshots(self, *, purpose: str | None = None) -> list[SnapshotEntry]:
        query = select(snapshots).order_by(snapshots.c.as_of, snapshots.c.snapshot_id)
        if purpose is not None:
            query = query.where(snapshots.c.purpose == purpose)
        with self.ledger.engine.connect() as conn:
            return [SnapshotEntry.from_row(r) for r in conn.execute(query)]

    def register(self, entry: SnapshotEntry, *, publish: Callable[[Connection], None]) -> None:
        """Insert ``entry`` and call ``publish`` (with the connection) inside the same transaction.

        If publishing fails, nothing is registered; if the commit fails after publishing, the
        caller's ``publish`` must be undone by the caller (it sees the exception).
        """
        values = entry.to_dict()
        values.update(
            as_of=to_micros(entry.as_of),
            registered_at=to_micros(entry.registered_at),
            policy_ref=entry.policy_ref,
            path=entry.location,
        )
        values.pop("policy")
        values["derived_from"] = entry.derived_from
        with self.ledger.engine.begin() as conn:
            conn.execute(insert(snapshots).values(**values))
            publish(conn)

    def move(self, snapshot_id: str, path: Path | str, *, conn: Connection | None = None) -> None:
        """Record that ``snapshot_id`` is now at ``path`` (a folder or a store URI; in ``conn``'s
        transaction, if given)."""
        statement = update(snapshots).where(snapshots.c.snapshot_id == snapshot_id).values(path=str(path))
        if conn is not None:
            conn.execute(statement)
            return
        with self.ledger.engine.begin() as own:
            own.execute(statement)

    # -- models --------------------------------------------------------------------------------

    def register_model(
        self,
        name: str,
        snapshot_ids: Sequence[str],
        *,
        at: datetime,
        note: str = "",
        trained_at: datetime | None = None,
        watermark: int | None = None,
        override: Override | None = None,
        overridden: Sequence[OverriddenMember] = (),
    ) -> tuple[ModelEntry, bool]:
        """Register model ``name`` trained on ``snapshot_ids``; returns (model, created).

        Registering the same name with the same snapshots again changes nothing; other snapshots
        under a known name are refused (a model's training data does not change after the fact).
        The debt check belongs to the caller (``consentgate.snapshots.training_runs``); this only
        records what it decided, the override and its members in the same transaction.
        """
        if not name.strip():
            raise InputError("NAME: a model needs a name")
        if not snapshot_ids:
            raise InputError("--snapshot: name at least one snapshot the model was trained on")
        for snapshot_id in snapshot_ids:
            self.require(snapshot_id)
        wanted = tuple(sorted(set(snapshot_ids)))
        existing = self.get_model(name)
        if existing is not None:
            if existing.snapshot_ids != wanted:
                raise ConflictError(
                    f"model {name!r} is already registered with snapshots {', '.join(existing.snapshot_ids)}"
                )
            return existing, False
        trained = at if trained_at is None else trained_at
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(
                    insert(models).values(
                        name=name,
                        registered_at=to_micros(at),
                        note=note,
                        trained_at=to_micros(trained),
                        watermark=watermark,
                        override_reason=None if override is None else override.reason,
                        override_by=None if override is None else override.by,
                        debt_members=0 if override is None else override.members,
                    )
                )
                conn.execute(
                    insert(model_snapshots), [{"model_name": name, "snapshot_id": s} for s in wanted]
                )
                if overridden:
                    conn.execute(
                        insert(debt_overrides),
                        [
                            {
                                "model_name": name,
                                "snapshot_id": m.snapshot_id,
                                "member_id": m.member_id,
                                "reason": m.reason,
                                "since": None if m.since is None else to_micros(m.since),
                                "seq": m.seq,
                            }
                            for m in overridden
                        ],
                    )
        except IntegrityError:  # registered concurrently: report what won
            return self.register_model(
                name,
                snapshot_ids,
                at=at,
                note=note,
                trained_at=trained_at,
                watermark=watermark,
                override=override,
                overridden=overridden,
            )
        return self.require_model(name), True

    def overridden(
        self, *, model: str | None = None, member_id: int | None = None, snapshot_id: str | None = None
    ) -> list[tuple[str, OverriddenMember]]:
        """(model name, member) pairs recorded under overrides, filtered by any of the arguments."""
        query = select(debt_overrides).order_by(
            debt_overrides.c.model_name, debt_overrides.c.snapshot_id, debt_overrides.c.member_id
        )
        if model is not None:
            query = query.where(debt_overrides.c.model_name == model)
        if member_id is not None:
            query = query.where(debt_overrides.c.member_id == member_id)
        if snapshot_id is not None:
            query = query.where(debt_overrides.c.snapshot_id == snapshot_id)
        with self.ledger.engine.connect() as conn:
            return [
                (
                    r.model_name,
                    OverriddenMember(
                        r.snapshot_id,
                        int(r.member_id),
                        r.reason,
                        None if r.since is None else from_micros(r.since),
                        None if r.seq is None else int(r.seq),
                    ),
                )
                for r in conn.execute(query)
            ]

    # -- training reads ------------------------------------------------------------------------

    def record_read(self, read: TrainingRead) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(
                insert(training_reads).values(
                    run_id=read.run_id,
                    snapshot_id=read.snapshot_id,
                    purpose=read.purpose,
                    read_at=to_micros(read.read_at),
                    watermark=read.watermark,
                    job=read.job,
                    covered_by_override=read.covered_by_override,
                    recorded_at=to_micros(read.recorded_at),
                )
            )

    def reads(self, snapshot_ids: Sequence[str] | None = None) -> list[TrainingRead]:
        query = select(training_reads).order_by(training_reads.c.recorded_at, training_reads.c.run_id)
        if snapshot_ids is not None:
            query = query.where(training_reads.c.snapshot_id.in_(list(snapshot_ids)))
        with self.ledger.engine.connect() as conn:
            return [
                TrainingRead(
                    r.run_id,
                    r.snapshot_id,
                    r.purpose,
                    from_micros(r.read_at),
                    int(r.watermark),
                    r.job,
                    int(r.covered_by_override),
                    from_micros(r.recorded_at),
                )
                for r in conn.execute(query)
            ]

    def get_model(self, name: str) -> ModelEntry | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(models).where(models.c.name == name)).first()
            if row is None:
                return None
            return ModelEntry.from_row(row, self._snapshots_of(conn, name))

    def require_model(self, name: str) -> ModelEntry:
        model = self.get_model(name)
        if model is None:
            raise NotFoundError(f"no model {name!r} is registered (see `consentgate model list`)")
        return model

    def models(self) -> list[ModelEntry]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(models).order_by(models.c.name)).fetchall()
            return [ModelEntry.from_row(r, self._snapshots_of(conn, r.name)) for r in rows]

    @staticmethod
    def _snapshots_of(conn: Connection, name: str) -> tuple[str, ...]:
        rows = conn.execute(
            select(model_snapshots.c.snapshot_id)
            .where(model_snapshots.c.model_name == name)
            .order_by(model_snapshots.c.snapshot_id)
        )
        return tuple(r.snapshot_id for r in rows)
