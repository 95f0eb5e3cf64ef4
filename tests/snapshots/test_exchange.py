"""The affiliate advertising exchange (DOMAIN §1.4): outbound sharing and the inbound gate; and
OpenLineage events sent over HTTP when a URL is configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine, decide
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import BuildRequest, build_snapshot
from consentgate.snapshots.openlineage import FACET_KEY
from consentgate.snapshots.registry import Registry
from tests.conftest import FixedClock, at
from tests.snapshots.conftest import MakeNetwork

NO_SHARING_REGIONS = {"EEA", "CH"}


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[tuple[str, Ledger]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url, clock=FixedClock(), initialise=True)
    yield url, ledger
    ledger.close()


def test_gate_keeps_only_inbound_data_that_settings_and_regions_allow(
    sqlite: tuple[str, Ledger], engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """`consentgate gate` publishes a gate snapshot: affiliate engagement of members whose region and
    settings allow it, each record agreeing with decide(), nothing from the EEA or Switzerland."""
    url, ledger = sqlite
    net = make_network(ledger)
    args = ["--db", url, "gate", "--data", str(net.root), "--as-of", "2025-12-01", "--json"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert (manifest["kind"], manifest["purpose"]) == ("gate", "ads.affiliate_data")
    kept = pq.read_table(Path(manifest["path"]) / "records").to_pylist()
    assert kept, "the network has inbound data some members allow"
    assert {r["category"] for r in kept} == {"affiliate.engagement"}
    kept_ids = {r["record_id"] for r in kept}
    for row in net.rows():
        allowed = decide(
            engine,
            ledger,
            int(row["member_id"]),  # type: ignore[call-overload]
            str(row["category"]),
            "ads.affiliate_data",
            at("2025-12-01"),
            created_at=row["created_at"],  # type: ignore[arg-type]
        ).allowed
        assert (row["record_id"] in kept_ids) == allowed, row
    regions = set(manifest["counts"]["by_region"])
    for region in NO_SHARING_REGIONS & regions:
        assert "included" not in manifest["counts"]["by_region"][region]
    [entry] = Registry(ledger).snapshots()
    assert entry.kind == "gate"


def test_outbound_sharing_never_includes_eea_or_swiss_members(
    sqlite: tuple[str, Ledger], engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """A snapshot for ads.affiliate_sharing holds only profile, feed and ad-engagement data of members
    outside the EEA and Switzerland."""
    _, ledger = sqlite
    net = make_network(ledger)
    built = build_snapshot(
        BuildRequest(
            data=net.root, purpose="ads.affiliate_sharing", as_of=at("2025-12-01"), out=tmp_path / "o"
        ),
        ledger=ledger,
        engine=engine,
    )
    by_region = built.manifest["counts"]["by_region"]
    assert any("included" in counts for counts in by_region.values())
    for region in NO_SHARING_REGIONS & set(by_region):
        assert "included" not in by_region[region]
        assert by_region[region].get("region_excluded", 0) > 0
    categories = set(built.manifest["counts"]["included_by_category"])
    assert categories <= set(engine.timeline.policies[-1].purposes["ads.affiliate_sharing"].categories)


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "event": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return


def test_openlineage_events_go_over_http_when_a_url_is_configured(
    sqlite: tuple[str, Ledger], engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """With --lineage-url the build POSTs START and COMPLETE to the endpoint and writes no file."""
    _, ledger = sqlite
    net = make_network(ledger)
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        out = tmp_path / "out"
        built = build_snapshot(
            BuildRequest(
                data=net.root, purpose="genai.training", as_of=at("2025-11-04"), out=out, lineage_url=url
            ),
            ledger=ledger,
            engine=engine,
        )
    finally:
        server.shutdown()
        server.server_close()
    events = [r["event"] for r in _Collector.received]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert {r["path"] for r in _Collector.received} == {"/api/v1/lineage"}
    assert events[1]["run"]["facets"][FACET_KEY]["snapshotId"] == built.snapshot_id
    assert not (out / "openlineage.jsonl").exists()
