"""OpenLineage run events for builds: START, then COMPLETE or FAIL, through openlineage-python.

Transport: HTTP when a URL is given (``--lineage-url`` or ``OPENLINEAGE_URL``), otherwise a file
transport appending one JSON event per line to ``OUT/openlineage.jsonl`` (beside the snapshots,
never inside one, so snapshot bytes stay deterministic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid

from consentgate import __version__
from consentgate.timeutil import format_instant, now_utc

NAMESPACE = "consentgate"
PRODUCER = f"https://github.com/consentgate/consentgate/tree/v{__version__}"


@attr.define
class ConsentgateRunFacet(RunFacet):
    """What the build decided from: the policy version, the as-of time and the ledger watermark."""

    purpose: str
    policyId: str | None  # noqa: N815 (OpenLineage facets use camelCase)
    policyVersion: int | None  # noqa: N815
    policyHash: str | None  # noqa: N815
    asOf: str  # noqa: N815
    watermark: int
    snapshotId: str | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return "https://consentgate.dev/spec/facets/1-0-0/ConsentgateRunFacet.json"


@dataclass
class LineageEmitter:
    """One build's run: emits START once, then COMPLETE or FAIL."""

    client: OpenLineageClient
    job_name: str
    inputs: list[InputDataset] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: str(generate_new_uuid()))

    def emit(
        self, state: RunState, facet: ConsentgateRunFacet, outputs: list[OutputDataset] | None = None
    ) -> None:
        event = RunEvent(
            eventType=state,
            eventTime=now_utc().isoformat(),
            run=Run(runId=self.run_id, facets={"consentgate": facet}),
            job=Job(namespace=NAMESPACE, name=self.job_name),
            inputs=self.inputs,
            outputs=outputs or [],
            producer=PRODUCER,
        )
        self.client.emit(event)


def lineage_client(out: Path, url: str | None) -> OpenLineageClient:
    url = url or os.environ.get("OPENLINEAGE_URL")
    if url:
        return OpenLineageClient(transport=HttpTransport(HttpConfig(url=url)))
    log = out / "openlineage.jsonl"
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(log), append=True)))


def run_facet(
    *,
    purpose: str,
    policy: Any,
    as_of: datetime,
    watermark: int,
    snapshot_id: str | None = None,
) -> ConsentgateRunFacet:
    return ConsentgateRunFacet(
        purpose=purpose,
        policyId=None if policy is None else policy.id,
        policyVersion=None if policy is None else policy.version,
        policyHash=None if policy is None else policy.content_hash(),
        asOf=format_instant(as_of),
        watermark=watermark,
        snapshotId=snapshot_id,
        producer=PRODUCER,
    )


def ol_input(path: Path) -> InputDataset:
    return InputDataset(namespace="file", name=str(path.resolve()))


def ol_output(path: Path) -> OutputDataset:
    return OutputDataset(namespace="file", name=str(path.resolve()))


def ledger_dataset(url: str) -> InputDataset:
    return InputDataset(namespace="consentgate-ledger", name=url)
