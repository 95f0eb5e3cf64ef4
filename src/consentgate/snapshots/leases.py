"""Leases: which build is in progress where, held in the registry database, not in a PID.

A build (``snapshot build``, ``gate``, ``snapshot refresh``) takes a lease before it creates its
unpublished folder ``OUT/.<kind>-<lease_id>.partial`` and holds it until it has published or failed:

- the lease is renewed every ``RENEW_SECONDS`` by a background thread and runs out
  ``LEASE_SECONDS`` after the last renewal; host and PID are stored for humans only;
- one lease per *build key* (OUT, kind, purpose, as-of, watermark): a second build of the same key
  waits for the first (``--wait``) or is refused with who holds it; never two builds of one result;
- the registration that publishes a snapshot ends the lease in the same transaction, and only if the
  lease is still this build's (a build whose lease ran out, say while the database was unreachable,
  publishes nothing: another build may have taken its place);
- only the folders of leases that ran out are removed (on any host sharing OUT and the database),
  never a folder whose build is still renewing. A folder no lease names (an older consentgate's, or
  one whose lease row was lost) is removed once it has not changed for ``ORPHAN_SECONDS``.

Hosts must have clocks within a fraction of ``LEASE_SECONDS`` of each other (NTP does that).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from consentgate.exceptions import ConflictError, one_line
from consentgate.ledger.schema import build_leases, snapshots
from consentgate.ledger.store import Ledger
from consentgate.snapshots import stores
from consentgate.timeutil import format_instant, from_micros, now_utc, to_micros

LEASE_SECONDS = 30.0
"""A lease not renewed for this long has run out: its build is taken to be gone."""
RENEW_SECONDS = 5.0
"""How often a running build renews its lease."""
ORPHAN_SECONDS = 86_400.0
"""An unpublished folder that no lease names is removed once unchanged for this long."""
POLL_SECONDS = 1.0
"""How often a build waiting for another (``--wait``) looks again."""

_FOLDER = re.compile(r"\.(?P<kind>[a-z]+)-(?P<lease>[0-9a-f]{32})\.partial")
log = logging.getLogger(__name__)


class BuildInProgress(ConflictError):
    """Another build of the same result into the same OUT holds an unexpired lease."""


class LeaseLost(ConflictError):
    """The build's lease ran out or was taken over before it published."""


def build_key(out: Path | str, kind: str, purpose: str, as_of: datetime, watermark: int) -> str:
    """What makes two builds the same build: one of them at a time (``out``: a folder, or a store's URI)."""
    place = out if isinstance(out, str) else str(out.resolve())
    text = "\n".join([place, kind, purpose, format_instant(as_of), str(watermark)])
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> int:
    return to_micros(now_utc())


@dataclass
class Lease:
    """A held lease; ``folder`` is the build's unpublished folder (created by the caller)."""

    ledger: Ledger
    lease_id: str
    folder: Path
    description: str
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    lost: str | None = None
    """Why renewing failed for good (the lease was gone), if it did."""

    @classmethod
    def acquire(
        cls,
        ledger: Ledger,
        *,
        out: Path,
        kind: str,
        purpose: str,
        as_of: datetime,
        watermark: int,
        wait: float = 0.0,
        also: Callable[[Connection], None] | None = None,
        place: str | None = None,
    ) -> Lease:
        """Take the lease for this build, waiting up to ``wait`` seconds for a build that holds it.

        ``out`` holds the unpublished folder; ``place`` (a store's URI) names OUT instead when OUT is
        on a store and ``out`` is this host's staging folder. ``also`` runs in the transaction that
        takes the lease (the outbox records START there).
        """
        key = build_key(place if place is not None else out, kind, purpose, as_of, watermark)
        lease_id = uuid.uuid4().hex
        folder = out / f".{kind}-{lease_id}.partial"
        description = f"{kind} of {purpose} as of {format_instant(as_of)} at watermark {watermark}"
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            now = _now()
            try:
                with ledger.engine.begin() as conn:
                    conn.execute(
                        insert(build_leases).values(
                            lease_id=lease_id,
                            build_key=key,
                            folder=str(folder),
                            description=description,
                            host=socket.gethostname()[:255],
                            pid=os.getpid(),
                            acquired_at=now,
                            expires_at=now + int(LEASE_SECONDS * 1_000_000),
                        )
                    )
                    if also is not None:
                        also(conn)
                break
            except IntegrityError:
                row = _holder_row(ledger, key)
                if row is None:
                    continue  # released between our insert and our look
                if row.expires_at < now:
                    # A lease that ran out is no one's: its folder goes, and the key is free.
                    if _take_expired(ledger, row.lease_id, now):
                        shutil.rmtree(row.folder, ignore_errors=True)
                    continue
                if time.monotonic() >= deadline:
                    raise BuildInProgress(
                        f"a {description} into {place or out} is in progress: {_describe(row)};"
                        " nothing was built (wait for it with --wait SECONDS, or run again when it is done)"
                    ) from None
                time.sleep(POLL_SECONDS)
        lease = cls(ledger, lease_id, folder, description)
        lease._thread = threading.Thread(target=lease._renew_loop, name="consentgate-lease", daemon=True)
        lease._thread.start()
        return lease

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                if not self.renew():
                    self.lost = "its lease was removed or taken over by another build"
                    return
            except SQLAlchemyError as exc:  # the database may be back before the lease runs out
                log.warning("renewing the lease of %s failed: %s", self.folder.name, one_line(exc))

    def renew(self) -> bool:
        """Push the lease's end ``LEASE_SECONDS`` ahead; False if it is no longer this build's."""
        now = _now()
        with self.ledger.engine.begin() as conn:
            changed = conn.execute(
                update(build_leases)
                .where(build_leases.c.lease_id == self.lease_id, build_leases.c.expires_at >= now)
                .values(expires_at=now + int(LEASE_SECONDS * 1_000_000))
            ).rowcount
        return bool(changed)

    def end(self, conn: Connection) -> None:
        """End the lease inside the caller's transaction (the one that publishes); raises LeaseLost,
        so the transaction rolls back, when the lease is no longer this build's."""
        self._stop.set()
        gone = conn.execute(
            delete(build_leases).where(
                build_leases.c.lease_id == self.lease_id, build_leases.c.expires_at >= _now()
            )
        ).rowcount
        if not gone:
            raise LeaseLost(
                f"the lease of this {self.description} ran out before it published"
                f" ({self.lost or f'not renewed for {LEASE_SECONDS:.0f} s'}): another build may own"
                " OUT now; nothing published"
            )

    def release(self, also: Callable[[Connection], None] | None = None) -> None:
        """Stop renewing and give the lease up (a failed build; ``also`` records FAIL with it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.ledger.engine.begin() as conn:
            conn.execute(delete(build_leases).where(build_leases.c.lease_id == self.lease_id))
            if also is not None:
                also(conn)

    def stop(self) -> None:
        """Stop renewing (after ``end`` committed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _holder_row(ledger: Ledger, key: str) -> Any:
    with ledger.engine.connect() as conn:
        return conn.execute(select(build_leases).where(build_leases.c.build_key == key)).first()


def _describe(row: Any) -> str:
    return (
        f"lease {row.lease_id[:12]} held by pid {row.pid} on {row.host} since"
        f" {format_instant(from_micros(row.acquired_at))}, renewed until"
        f" {format_instant(from_micros(row.expires_at))}"
    )


def _take_expired(ledger: Ledger, lease_id: str, now: int) -> bool:
    """Delete a lease that ran out (only if it still has: a late renewal wins)."""
    with ledger.engine.begin() as conn:
        return bool(
            conn.execute(
                delete(build_leases).where(
                    build_leases.c.lease_id == lease_id, build_leases.c.expires_at < now
                )
            ).rowcount
        )


def remove_stale_partials(out: Path, ledger: Ledger) -> list[Path]:
    """Remove the unpublished folders in ``out`` whose lease ran out, and those no lease names that
    have not changed for ``ORPHAN_SECONDS``; returns what was removed. A live build's folder stays."""
    removed: list[Path] = []
    now = _now()
    with ledger.engine.connect() as conn:
        leases = {r.lease_id: (r.expires_at, Path(r.folder)) for r in conn.execute(select(build_leases))}
    home = out.resolve()
    for lease, (expires_at, folder) in leases.items():
        # A lease that ran out, of a folder in this OUT (other OUTs are their own builds' to clean).
        if expires_at >= now or folder.parent.resolve() != home or not _take_expired(ledger, lease, now):
            continue
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for folder in sorted(out.glob(".*.partial")):
        match = _FOLDER.fullmatch(folder.name)
        if match is not None and match["lease"] in leases:
            continue  # a build in progress (on this host or another), or just cleaned above
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            continue
        if age >= ORPHAN_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


UPLOAD = re.compile(r".+\.(?P<lease>[0-9a-f]{16})")
"""A snapshot's prefix on a store: ``<snapshot_id>.<the first 16 hex digits of its build's lease>``."""


def remove_stale_uploads(out: str, ledger: Ledger) -> list[str]:
    """Delete the prefixes under the store URI ``out`` that no registered snapshot names, that hold
    no ``_PUBLISHED`` marker and whose build holds no lease any more (an upload that failed, or whose
    build was killed before it registered); returns their URIs. An upload in progress stays."""
    where = stores.parse(out, "--out")
    now = _now()
    with ledger.engine.connect() as conn:
        # a lease that ran out can never be renewed or end in a registration: its upload is dead
        live = {
            r.lease_id[:16]
            for r in conn.execute(select(build_leases.c.lease_id).where(build_leases.c.expires_at >= now))
        }
        registered = {str(r.path).rstrip("/") for r in conn.execute(select(snapshots.c.path))}
    removed: list[str] = []
    for prefix in stores.folders(where):
        match = UPLOAD.fullmatch(prefix.name)
        if match is None or match["lease"] in live or prefix.uri in registered:
            continue
        if stores.exists(prefix.child(stores.PUBLISHED)):
            continue
        stores.delete_folder(prefix)
        removed.append(prefix.uri)
    return removed
