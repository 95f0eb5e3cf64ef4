"""A build in progress: its lease, its unpublished folder and its OpenLineage run, as one thing.

``BuildRun.begin`` takes the lease and records START in one transaction; ``finish`` (called by
``publish`` inside the registering transaction) ends the lease and records COMPLETE; ``fail`` gives
the lease up and records FAIL. After each, what is pending in the outbox for this run's target is
delivered once; what cannot be is left pending and named in ``warnings``, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import InputDataset, RunState
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from consentgate.ledger.store import Ledger
from consentgate.snapshots import openlineage as ol
from consentgate.snapshots import outbox
from consentgate.snapshots.leases import Lease, remove_stale_partials, remove_stale_uploads
from consentgate.snapshots.stores import Location

log = logging.getLogger(__name__)


@dataclass
class BuildRun:
    ledger: Ledger
    lease: Lease
    target: str
    emitter: ol.LineageEmitter
    facet_args: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def begin(
        cls,
        ledger: Ledger,
        *,
        out: Path,
        place: str | None = None,
        kind: str,
        purpose: str,
        as_of: datetime,
        watermark: int,
        policy: Any,
        job_name: str,
        inputs: list[InputDataset],
        lineage_url: str | None,
        wait: float = 0.0,
        subject: str | None = None,
    ) -> BuildRun:
        """Clean OUT of builds whose lease ran out, take this build's lease (recording START with
        it), create its unpublished folder and try to deliver START. ``subject`` (default: the
        purpose) is what makes the build itself, with OUT, kind, as-of and watermark. ``out`` is
        the local folder for the unpublished folder; ``place`` names OUT when that is a store (its
        URI: the lease is then one per store prefix, whichever host stages the build), and its
        uploads whose build is gone are removed there too."""
        target = ol.lineage_target(out, lineage_url)
        emitter = ol.LineageEmitter(ol.client_for(target), job_name=job_name, inputs=inputs)
        facet_args = {"purpose": purpose, "policy": policy, "as_of": as_of, "watermark": watermark}
        start = emitter.event(RunState.START, ol.run_facet(**facet_args))
        remove_stale_partials(out, ledger)
        if place is not None:
            remove_stale_uploads(place, ledger)
        lease = Lease.acquire(
            ledger,
            out=out,
            place=place,
            kind=kind,
            purpose=subject or purpose,
            as_of=as_of,
            watermark=watermark,
            wait=wait,
            also=outbox.recorder(target, start),
        )
        run = cls(ledger, lease, target, emitter, facet_args)
        try:
            lease.folder.mkdir()
        except BaseException:
            run.fail()
            raise
        run.deliver()
        return run

    @property
    def folder(self) -> Path:
        return self.lease.folder

    def finish(self, conn: Connection, snapshot_id: str, where: Location) -> None:
        """In the transaction that publishes: end the lease (LeaseLost if it ran out), record COMPLETE
        naming ``where`` the snapshot is published."""
        self.lease.end(conn)
        facet = ol.run_facet(**self.facet_args, snapshot_id=snapshot_id)
        complete = self.emitter.event(RunState.COMPLETE, facet, outputs=[ol.ol_output(where)])
        outbox.record(conn, self.target, complete)

    def done(self) -> None:
        """After the publishing transaction committed: stop renewing, deliver COMPLETE."""
        self.lease.stop()
        self.deliver()

    def fail(self) -> None:
        """Remove the unpublished folder, give the lease up and record FAIL; never raises (the
        failure being reported matters more)."""
        shutil.rmtree(self.lease.folder, ignore_errors=True)
        fail = self.emitter.event(RunState.FAIL, ol.run_facet(**self.facet_args))
        try:
            self.lease.release(also=outbox.recorder(self.target, fail))
        except SQLAlchemyError as exc:  # the lease runs out by itself; FAIL cannot be recorded
            log.warning("giving up the lease of %s failed: %s", self.lease.folder.name, exc)
            return
        with contextlib.suppress(Exception):
            self.deliver()

    def deliver(self) -> None:
        """Deliver what is pending for this run's target, once; a failure becomes a warning."""
        try:
            result = outbox.deliver(self.ledger, ol.client_for, targets={self.target})
        except SQLAlchemyError as exc:
            log.warning("reading the lineage outbox failed: %s", exc)
            return
        warning = result.warning()
        self.warnings = [] if warning is None else [warning]  # the latest state of the outbox
