"""A verified read is one OpenLineage run: START when the checks begin, then COMPLETE or FAIL.

The events go where a build's go (``snapshots.openlineage``): to ``OPENLINEAGE_URL`` when set,
otherwise appended to ``OUT/openlineage.jsonl`` beside the snapshot folder, so the snapshot's build
and every run that read it are one lineage graph (the build's output dataset is the read's input).
The run id is the id of the read in the ``training_reads`` table.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from openlineage.client.event_v2 import RunState
from openlineage.client.uuid import generate_new_uuid

from consentgate.exceptions import InputError, PublishError
from consentgate.snapshots import openlineage as ol
from consentgate.snapshots import stores
from consentgate.snapshots.openlineage import ConsentgateRunFacet
from consentgate.snapshots.registry import SnapshotEntry

DEFAULT_JOB = "training"
MAX_JOB = 200
"""The ``training_reads.job`` column's width."""


def job_label(job: str | None) -> str:
    """The job name recorded with the read: ``job`` stripped, or ``training``."""
    if job is None:
        return DEFAULT_JOB
    label = job.strip()
    if not label or len(label) > MAX_JOB or not label.isprintable():
        raise InputError(f"job: expected a printable name of 1 to {MAX_JOB} characters, got {job!r}")
    return label


def lineage_job_name(job: str) -> str:
    """``training`` for the default job, ``training.<job>`` for a named one."""
    return DEFAULT_JOB if job == DEFAULT_JOB else f"{DEFAULT_JOB}.{job}"


def new_run_id() -> str:
    """A UUID (the OpenLineage ``runId`` format), time-ordered like the builds' run ids."""
    return str(generate_new_uuid())


@dataclass
class ReadRun:
    """The OpenLineage run of one read; every emission error becomes a PublishError naming the target."""

    emitter: ol.LineageEmitter
    facet: ConsentgateRunFacet
    target: str

    @property
    def run_id(self) -> str:
        return self.emitter.run_id

    def start(self) -> None:
        self._emit(RunState.START)

    def complete(self) -> None:
        self._emit(RunState.COMPLETE)

    def fail(self) -> None:
        with contextlib.suppress(Exception):  # the refusal being reported matters more
            self._emit(RunState.FAIL)

    def _emit(self, state: RunState) -> None:
        try:
            self.emitter.emit(state, self.facet)
        except Exception as exc:
            raise PublishError(
                f"OpenLineage: the read's {state.value} event could not be sent to {self.target} ({exc});"
                " a read that is not in the lineage is not allowed, so the snapshot was not opened"
                " (set OPENLINEAGE_URL, or let the job write to that file)"
            ) from exc


def read_run(
    entry: SnapshotEntry,
    *,
    run_id: str,
    job: str,
    facet: ConsentgateRunFacet,
    ledger_where: str,
    lineage_url: str | None,
) -> ReadRun:
    """The run for reading ``entry``: inputs are the snapshot folder and the ledger the debt was read from."""
    url = lineage_url or os.environ.get("OPENLINEAGE_URL")
    # the file log beside the snapshot; for one on a store, where builds into its prefix log
    out = entry.path.parent if entry.uri is None else stores.staging_for(stores.parent(entry.uri))
    emitter = ol.LineageEmitter(
        ol.lineage_client(out, url),
        job_name=lineage_job_name(job),
        inputs=[ol.ol_input(entry.where()), ol.ledger_dataset(ledger_where)],
        run_id=run_id,
    )
    return ReadRun(emitter, facet, url or str(out / "openlineage.jsonl"))
