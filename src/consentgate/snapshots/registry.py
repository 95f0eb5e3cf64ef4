"""The lineage registry in the ledger database: snapshots, models, and which snapshots fed which model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from consentgate.exceptions import ConflictError, InputError, NotFoundError
from consentgate.ledger.schema import model_snapshots, models, snapshots
from consentgate.ledger.store import Ledger
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

    @classmethod
    def from_row(cls, row: Any) -> SnapshotEntry:
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
            path=Path(row.path),
            registered_at=from_micros(row.registered_at),
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
            "path": str(self.path),
            "registered_at": self.registered_at.isoformat(),
        }


@dataclass(frozen=True)
class ModelEntry:
    name: str
    registered_at: datetime
    note: str
    snapshot_ids: tuple[str, ...]


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

    def register(self, entry: SnapshotEntry, *, publish: Callable[[], None]) -> None:
        """Insert ``entry`` and call ``publish`` inside the same transaction.

        If publishing fails, nothing is registered; if the commit fails after publishing, the
        caller's ``publish`` must be undone by the caller (it sees the exception).
        """
        values = entry.to_dict()
        values.update(
            as_of=to_micros(entry.as_of),
            registered_at=to_micros(entry.registered_at),
            policy_ref=entry.policy_ref,
            path=str(entry.path),
        )
        values.pop("policy")
        with self.ledger.engine.begin() as conn:
            conn.execute(insert(snapshots).values(**values))
            publish()

    def move(self, snapshot_id: str, path: Path) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(
                update(snapshots).where(snapshots.c.snapshot_id == snapshot_id).values(path=str(path))
            )

    # -- models --------------------------------------------------------------------------------

    def register_model(
        self, name: str, snapshot_ids: Sequence[str], *, at: datetime, note: str = ""
    ) -> tuple[ModelEntry, bool]:
        """Register model ``name`` trained on ``snapshot_ids``; returns (model, created).

        Registering the same name with the same snapshots again changes nothing; other snapshots
        under a known name are refused (a model's training data does not change after the fact).
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
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(insert(models).values(name=name, registered_at=to_micros(at), note=note))
                conn.execute(
                    insert(model_snapshots), [{"model_name": name, "snapshot_id": s} for s in wanted]
                )
        except IntegrityError:  # registered concurrently: report what won
            return self.register_model(name, snapshot_ids, at=at, note=note)
        return ModelEntry(name, at, note, wanted), True

    def get_model(self, name: str) -> ModelEntry | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(models).where(models.c.name == name)).first()
            if row is None:
                return None
            return ModelEntry(
                row.name, from_micros(row.registered_at), row.note, self._snapshots_of(conn, name)
            )

    def require_model(self, name: str) -> ModelEntry:
        model = self.get_model(name)
        if model is None:
            raise NotFoundError(f"no model {name!r} is registered (see `consentgate model list`)")
        return model

    def models(self) -> list[ModelEntry]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(models).order_by(models.c.name)).fetchall()
            return [
                ModelEntry(r.name, from_micros(r.registered_at), r.note, self._snapshots_of(conn, r.name))
                for r in rows
            ]

    @staticmethod
    def _snapshots_of(conn: Connection, name: str) -> tuple[str, ...]:
        rows = conn.execute(
            select(model_snapshots.c.snapshot_id)
            .where(model_snapshots.c.model_name == name)
            .order_by(model_snapshots.c.snapshot_id)
        )
        return tuple(r.snapshot_id for r in rows)
