"""A published genai.training snapshot of the test network, clean at every instant after its as-of.

``published`` builds it as of ``AS_OF``, after every change the network's events make, so its debt
is empty until a test records another opt-out. The loader opens its own ledger connection from the
URL, as a training job does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import BuildResult
from consentgate.snapshots.registry import Registry
from tests.snapshots import conftest as snapshot_fixtures
from tests.snapshots.conftest import MakeNetwork, Network, build

# The network's fixtures, shared with the snapshot tests (a conftest's fixtures reach only its folder).
make_network = snapshot_fixtures.make_network
sqlite_ledger = snapshot_fixtures.sqlite_ledger

AS_OF = "2025-12-01T00:00:00Z"
"""After every instant at which an event of the network takes effect."""
PURPOSE = "genai.training"
MASTER = "local[2]"
SMALL_DATA = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.sql.shuffle.partitions": "2",
}


@dataclass
class Published:
    url: str
    ledger: Ledger
    net: Network
    snapshot: BuildResult
    out: Path
    events_dir: Path

    @property
    def snapshot_id(self) -> str:
        return self.snapshot.snapshot_id

    def files(self) -> list[Path]:
        """The record files the manifest lists, in its order."""
        return [self.snapshot.path / item["file"] for item in self.snapshot.manifest["outputs"]["records"]]

    def table(self) -> pa.Table:
        """The rows of the snapshot's record files, read straight from them."""
        return pa.concat_tables(pq.read_table(p) for p in self.files())

    def rows(self) -> list[dict[str, Any]]:
        """Those rows as dicts, by record_id."""
        return sorted(self.table().to_pylist(), key=lambda r: r["record_id"])

    def events(self) -> list[dict[str, Any]]:
        """The OpenLineage events of the reads (not the build's) in OUT/openlineage.jsonl."""
        log = self.out / "openlineage.jsonl"
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [e for e in events if str(e["job"]["name"]).startswith("training")]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """The process's Spark session, as tests/snapshots/test_engines.py makes it (fast JVM, tiny data)."""
    from consentgate.snapshots.engines.spark_engine import spark_session

    yield spark_session(MASTER, SMALL_DATA)


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader reads these from the environment; the tests say what they want instead."""
    for name in ("CONSENTGATE_DB", "CONSENTGATE_POLICY_DIR", "OPENLINEAGE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def published(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> Iterator[Published]:
    net = make_network(sqlite_ledger)
    out = tmp_path / "out"
    snapshot = build(sqlite_ledger, engine, net.root, out, purpose=PURPOSE, as_of=AS_OF)
    assert snapshot.manifest["counts"]["records_included"] > 0
    assert len(snapshot.manifest["outputs"]["records"]) == 2  # one per input file
    assert Registry(sqlite_ledger).reads() == []
    url = sqlite_ledger.engine.url.render_as_string(hide_password=False)
    yield Published(url, sqlite_ledger, net, snapshot, out, out.parent / "events")
