"""OpenLineage run events for builds: START, then COMPLETE or FAIL, through openlineage-python.

Transport: HTTP when a URL is given (``--lineage-url`` or ``OPENLINEAGE_URL``), otherwise a file
transport appending one JSON event per line to ``OUT/openlineage.jsonl`` (beside the snapshots,
never inside one, so snapshot bytes stay deterministic).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid
from sqlalchemy.engine import make_url

from consentgate import __version__
from consentgate.exceptions import InputError, PublishError, one_line
from consentgate.snapshots.stores import Location
from consentgate.timeutil import format_instant, now_utc

NAMESPACE = "consentgate"
PRODUCER = f"https://github.com/consentgate/consentgate/tree/v{__version__}"
TIMEOUT_SECONDS = 5.0
"""How long an HTTP delivery waits for the lineage server."""
FACET_KEY = "consentgate_run"
"""The run facet's key, by the spec's rule for custom facets: ``{prefix}_{name}``."""
FACET_SCHEMA = Path(__file__).parent / "schemas" / "ConsentgateRunFacet.json"
"""The facet's JSON Schema, shipped in the package (and in the repository at every release tag)."""
FACET_SCHEMA_URL = (
    f"https://github.com/consentgate/consentgate/blob/v{__version__}/src/consentgate/snapshots/"
    "schemas/ConsentgateRunFacet.json#/$defs/ConsentgateRunFacet"
)
"""``_schemaURL``: the shipped schema at this release's tag, as a JSON Pointer to the facet."""


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
        return FACET_SCHEMA_URL


@dataclass
class LineageEmitter:
    """One build's run: emits START once, then COMPLETE or FAIL."""

    client: OpenLineageClient
    job_name: str
    inputs: list[InputDataset] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: str(generate_new_uuid()))

    def event(
        self, state: RunState, facet: ConsentgateRunFacet, outputs: list[OutputDataset] | None = None
    ) -> RunEvent:
        """The run event for ``state`` (recorded in the outbox by builds, sent at once by reads)."""
        return RunEvent(
            eventType=state,
            eventTime=now_utc().isoformat(),
            run=Run(runId=self.run_id, facets={FACET_KEY: facet}),
            job=Job(namespace=NAMESPACE, name=self.job_name),
            inputs=self.inputs,
            outputs=outputs or [],
            producer=PRODUCER,
        )

    def emit(
        self, state: RunState, facet: ConsentgateRunFacet, outputs: list[OutputDataset] | None = None
    ) -> None:
        """Send the event now (a training read: no read without its lineage); PublishError if not."""
        try:
            self.client.emit(self.event(state, facet, outputs))
        except Exception as exc:  # the transport's own errors (requests', OSError): one line, not a trace
            transport = self.client.transport
            where = (
                urljoin(transport.url, transport.endpoint)
                if isinstance(transport, HttpTransport)
                else "the lineage log"
            )
            raise PublishError(
                f"OpenLineage: the {state.value} event could not be delivered to {where}"
                f" ({one_line(exc, 300)})"
            ) from exc


def lineage_target(out: Path, url: str | None) -> str:
    """Where a run's events go: the HTTP endpoint of ``--lineage-url`` / ``OPENLINEAGE_URL`` (a base
    URL such as ``http://marquez:5000``, events go to ``/api/v1/lineage``, or the endpoint itself), or
    the file log ``OUT/openlineage.jsonl`` (its absolute path)."""
    url = url or os.environ.get("OPENLINEAGE_URL")
    if not url:
        return str((out / "openlineage.jsonl").resolve())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"--lineage-url: expected an http:// or https:// URL of an OpenLineage endpoint, got {url!r}"
        )
    endpoint = parts.path.strip("/") or "api/v1/lineage"
    return urlunsplit((parts.scheme, parts.netloc, "/" + endpoint, "", ""))


def client_for(target: str, *, retries: int = 0) -> OpenLineageClient:
    """The client that delivers to ``target`` (see ``lineage_target``); HTTP retries ``retries``
    times on connection errors and 5xx (the outbox retries on its own, so its clients do not)."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        retry: dict[str, Any] = {"total": retries, "read": retries, "connect": retries}
        if retries:
            retry |= {"backoff_factor": 0.3, "status_forcelist": [500, 502, 503, 504]}
            retry |= {"allowed_methods": ["HEAD", "POST"]}
        config = HttpConfig(url=base, endpoint=parts.path.lstrip("/"), timeout=TIMEOUT_SECONDS, retry=retry)
        return OpenLineageClient(transport=HttpTransport(config))
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=target, append=True)))


def lineage_client(out: Path, url: str | None) -> OpenLineageClient:
    """A client that sends at once (with three retries) to ``lineage_target(out, url)``."""
    return client_for(lineage_target(out, url), retries=3)


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


def file_namespace() -> str:
    """OpenLineage's naming for a local file system, ``file://{host}``: two hosts' ``/data`` are
    two datasets, not one."""
    return f"file://{socket.gethostname()}"


def _naming(where: Path | Location) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a folder or file: ``file://{host}`` and the absolute path,
    or the store's ``s3://{bucket}`` (``hdfs://{host}:{port}``) and the key inside it."""
    if isinstance(where, Path):
        return file_namespace(), str(where.resolve())
    if where.local:
        return file_namespace(), str(where.local_path().resolve())
    return where.namespace, where.key


def ol_input(where: Path | Location) -> InputDataset:
    namespace, name = _naming(where)
    return InputDataset(namespace=namespace, name=name)


def ol_output(where: Path | Location) -> OutputDataset:
    namespace, name = _naming(where)
    return OutputDataset(namespace=namespace, name=name)


def ledger_dataset(url: str) -> InputDataset:
    """The ledger's events table, named as OpenLineage names tables: on PostgreSQL
    ``postgres://{host}:{port}`` and ``{database}.{schema}.events``; a SQLite ledger is a file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        schema = "public"
        for option in str(parsed.query.get("options", "")).split():
            if option.startswith("-csearch_path="):
                schema = option.removeprefix("-csearch_path=").split(",")[0]
        namespace = f"postgres://{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return InputDataset(namespace=namespace, name=f"{parsed.database}.{schema}.events")
    return InputDataset(namespace=file_namespace(), name=str(Path(parsed.database or "").resolve()))
