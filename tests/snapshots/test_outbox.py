"""Lineage that cannot break a build: events go through the outbox in the registry database.

A real HTTP endpoint (a threading ``http.server`` on loopback) plays the lineage server: down, failing
with 500, or accepting. Every event it receives is validated against the OpenLineage 2-0-2 run-event
schema (vendored in ``tests/fixtures``) and the custom facet against the schema the package ships.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry as SchemaRegistry
from referencing import Resource
from sqlalchemy import select

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConsentgateError
from consentgate.ledger.schema import lineage_outbox
from consentgate.ledger.store import Ledger
from consentgate.snapshots import outbox
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.openlineage import FACET_KEY, FACET_SCHEMA, FACET_SCHEMA_URL
from consentgate.snapshots.registry import Registry
from tests.conftest import at
from tests.helpers import cg, free_port
from tests.snapshots.conftest import T_NEXT_DAY, MakeNetwork, openlineage_events

SPEC = Path(__file__).parents[1] / "fixtures" / "openlineage-2-0-2" / "OpenLineage.json"


def _validator() -> tuple[Draft202012Validator, Draft202012Validator]:
    spec = json.loads(SPEC.read_text())
    facet = json.loads(FACET_SCHEMA.read_text())
    schemas = SchemaRegistry().with_resources(
        [(spec["$id"], Resource.from_contents(spec)), (facet["$id"], Resource.from_contents(facet))]
    )
    run_event = {"$ref": f"{spec['$id']}#/$defs/RunEvent"}
    facet_def = {"$ref": f"{facet['$id']}#/$defs/ConsentgateRunFacet"}
    return (
        Draft202012Validator(run_event, registry=schemas, format_checker=Draft202012Validator.FORMAT_CHECKER),
        Draft202012Validator(facet_def, registry=schemas, format_checker=Draft202012Validator.FORMAT_CHECKER),
    )


EVENT, FACET = _validator()


def check_event(event: dict[str, Any]) -> None:
    """Valid OpenLineage 2-0-2, with the consentgate facet valid against its shipped schema."""
    EVENT.validate(event)
    facet = event["run"]["facets"][FACET_KEY]
    FACET.validate(facet)
    assert facet["_schemaURL"] == FACET_SCHEMA_URL
    assert FACET_SCHEMA_URL.split("/blob/")[1].split("/", 1)[1].split("#")[0] == (
        "src/consentgate/snapshots/schemas/ConsentgateRunFacet.json"
    )  # the URL names the file the package ships


@dataclass
class Endpoint:
    """A lineage server on loopback: ``fail`` lists event types answered with 500."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Endpoint(url=f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/api/v1/lineage" or body["eventType"] in state.fail:
                self.send_response(500)
            else:
                state.received.append(body)
                self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _build(ledger: Ledger, engine: DecisionEngine, data: Path, out: Path, url: str | None) -> BuildResult:
    request = BuildRequest(
        data=data,
        purpose="genai.training",
        as_of=at(T_NEXT_DAY),
        out=out,
        events_dir=out.parent / "events",
        lineage_url=url,
    )
    return build_snapshot(request, ledger=ledger, engine=engine)


def _outbox(ledger: Ledger) -> list[tuple[str, bool]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(lineage_outbox.c.event_type, lineage_outbox.c.delivered_at).order_by(lineage_outbox.c.id)
        ).all()
    return [(kind, delivered is not None) for kind, delivered in rows]


def _send(ledger: Ledger, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``consentgate lineage send``, as a user runs it."""
    url = ledger.engine.url.render_as_string(hide_password=False)
    return cg(url, "lineage", "send", "--backoff", "0", *args, cwd=tmp_path)


def test_an_unreachable_endpoint_never_fails_a_build_and_send_delivers_later(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path, endpoint: Endpoint
) -> None:
    net = make_network(ledger)
    down = f"http://127.0.0.1:{free_port()}"
    built = _build(ledger, engine, net.root, tmp_path / "out", down)
    assert [e.snapshot_id for e in Registry(ledger).snapshots()] == [built.snapshot_id]
    [warning] = built.warnings
    assert "2 event(s) pending" in warning and f"{down}/api/v1/lineage: connection refused" in warning
    assert "`consentgate lineage send`" in warning
    assert _outbox(ledger) == [("START", False), ("COMPLETE", False)]
    assert outbox.pending(ledger) == {f"{down}/api/v1/lineage": 2}

    # Still down: lineage send says so (exit 2) and keeps both pending.
    result = _send(ledger, tmp_path, "--attempts", "2")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "2 OpenLineage event(s) still pending" in result.stdout + result.stderr
    assert _outbox(ledger) == [("START", False), ("COMPLETE", False)]

    # The events were recorded for the endpoint the build was given; point it at the live one.
    with ledger.engine.begin() as conn:
        conn.execute(lineage_outbox.update().values(target=f"{endpoint.url}/api/v1/lineage"))
    result = _send(ledger, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered 2 OpenLineage event(s)" in result.stdout + result.stderr
    assert [e["eventType"] for e in endpoint.received] == ["START", "COMPLETE"]
    assert endpoint.received[1]["run"]["facets"][FACET_KEY]["snapshotId"] == built.snapshot_id
    for event in endpoint.received:
        check_event(event)
    assert _outbox(ledger) == [("START", True), ("COMPLETE", True)]
    again = _send(ledger, tmp_path)
    assert again.returncode == 0 and "delivered 0" in again.stdout  # delivered once, not twice
    assert len(endpoint.received) == 2


def test_a_500_on_complete_leaves_it_pending_and_never_fails_the_build(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path, endpoint: Endpoint
) -> None:
    net = make_network(ledger)
    endpoint.fail = {"COMPLETE"}
    built = _build(ledger, engine, net.root, tmp_path / "out", endpoint.url)
    assert not built.reproduced and Registry(ledger).get(built.snapshot_id) is not None
    assert [e["eventType"] for e in endpoint.received] == ["START"]
    assert "1 event(s) pending" in built.warnings[0] and "HTTP 500" in built.warnings[0]
    assert _outbox(ledger) == [("START", True), ("COMPLETE", False)]

    endpoint.fail = set()
    result = _send(ledger, tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"delivered": 1, "pending": {}, "errors": {}}
    assert [e["eventType"] for e in endpoint.received] == ["START", "COMPLETE"]
    for event in endpoint.received:
        check_event(event)


def test_a_pending_start_is_delivered_before_its_complete(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path, endpoint: Endpoint
) -> None:
    """Per target, events leave in the order they were recorded: a COMPLETE never overtakes a START."""
    net = make_network(ledger)
    endpoint.fail = {"START"}
    built = _build(ledger, engine, net.root, tmp_path / "out", endpoint.url)
    assert endpoint.received == []  # COMPLETE waited behind the failed START
    assert "2 event(s) pending" in built.warnings[0]
    endpoint.fail = set()
    assert _send(ledger, tmp_path).returncode == 0
    assert [e["eventType"] for e in endpoint.received] == ["START", "COMPLETE"]


def test_a_failed_build_records_and_delivers_fail(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path, endpoint: Endpoint
) -> None:
    """A failure after START (a record id twice): FAIL is recorded with the lease given up."""
    net = make_network(ledger)
    path = net.record_files[1]
    table = pq.read_table(path)
    ids = table["record_id"].to_pylist()
    pq.write_table(table.set_column(0, "record_id", pa.array([ids[0], ids[0], *ids[2:]])), path)
    with pytest.raises(ConsentgateError, match="record_id"):
        _build(ledger, engine, net.root, tmp_path / "out", endpoint.url)
    assert [e["eventType"] for e in endpoint.received] == ["START", "FAIL"]
    for event in endpoint.received:
        check_event(event)
    assert _outbox(ledger) == [("START", True), ("FAIL", True)]


def test_the_file_log_events_are_valid_openlineage(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(ledger)
    out = tmp_path / "out"
    built = _build(ledger, engine, net.root, out, None)
    assert built.warnings == []
    events = openlineage_events(out)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        check_event(event)
    assert outbox.pending(ledger) == {}


def test_the_command_line_warns_in_one_line_and_exits_0(
    ledger: Ledger, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(ledger)
    url = ledger.engine.url.render_as_string(hide_password=False)
    down = f"http://127.0.0.1:{free_port()}"
    args = ["snapshot", "build", "--data", str(net.root), "--purpose", "genai.training"]
    args += ["--as-of", T_NEXT_DAY, "--out", str(tmp_path / "out"), "--lineage-url", down]
    result = cg(url, *args, cwd=tmp_path)  # COLUMNS=80: a narrow terminal must not fold the warning
    assert result.returncode == 0, result.stderr
    assert "published" in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: OpenLineage: 2 event(s) pending (") and line.endswith("delivers them")
