"""The Spark engine on a real standalone cluster whose executors do not all share the driver's disk.

One master and two workers run as separate JVMs (``tests.snapshots.cluster``). The worker
"private" runs in its own mount namespace with an empty tmpfs over ``PRIVATE``: its executors write
there, and the driver never sees it, as on a cluster whose OUT is a local disk. Every build runs
through the command line, as a user runs it. The issue this answers (13) found a snapshot published
with 0 rows, a manifest claiming 212,153 and ``verify`` saying ok; each scenario below must either
build the right snapshot or fail with one clear line and publish nothing.

Needs root for the private mount (``unshare --mount``); the test command runs as root here and in CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.registry import Registry
from tests.helpers import one_error_line
from tests.snapshots.cluster import Cluster, can_unshare
from tests.snapshots.conftest import T_NEXT_DAY, MakeNetwork, build, visible

pytestmark = pytest.mark.skipif(
    not can_unshare(), reason="a private mount for one worker needs root and unshare (util-linux)"
)
EXECUTOR = ["--spark-conf", "spark.executor.memory=512m", "--spark-conf", "spark.cores.max=2"]


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the driver sees on its disk and the private worker sees as its own empty tmpfs."""
    return tmp_path_factory.mktemp("private") / "out"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, private: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        running.add_worker("shared")
        running.add_worker("private", private=private)
        yield running
    finally:
        running.stop()


@pytest.fixture
def ledger(sqlite_ledger: Ledger) -> Ledger:
    """The builds run as separate processes: a SQLite ledger they open by its file."""
    return sqlite_ledger


def spark_command(
    ledger: Ledger, cluster: Cluster, data: Path, out: Path, *extra: str
) -> tuple[list[str], dict[str, str]]:
    """``consentgate snapshot build --engine spark`` on the cluster, and its environment."""
    url = ledger.engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "consentgate", "--db", url, "snapshot", "build", "--data", str(data)]
    command += ["--purpose", "genai.training", "--as-of", T_NEXT_DAY, "--out", str(out)]
    command += ["--engine", "spark", "--spark-master", cluster.url, *EXECUTOR, *extra, "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTGATE_", "SPARK_", "PYSPARK_"))}
    env |= {"SPARK_LOCAL_IP": "127.0.0.1", "XDG_CACHE_HOME": str(out.parent / "cache"), "COLUMNS": "200"}
    return command, env


def spark_build(
    ledger: Ledger, cluster: Cluster, data: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    command, env = spark_command(ledger, cluster, data, out, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)


def rows(folder: Path) -> tuple[pa.Table, pa.Table]:
    """The records (all files, in file order) and members.parquet of a published snapshot."""
    manifest = json.loads((folder / "manifest.json").read_text())
    records = pa.concat_tables([pq.read_table(folder / f["file"]) for f in manifest["outputs"]["records"]])
    return records, pq.read_table(folder / "members.parquet")


def same_as_duckdb(result: subprocess.CompletedProcess[str], reference: Path) -> None:
    built = json.loads(result.stdout)
    records, members = rows(Path(built["path"]))
    want_records, want_members = rows(reference)
    assert records.to_pylist() == want_records.to_pylist()  # row for row, in input order
    assert members.to_pylist() == want_members.to_pylist()
    assert records.num_rows == built["counts"]["records_included"] > 0


def test_a_shared_out_builds_on_the_cluster_what_duckdb_builds(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    net = make_network(ledger, files=6)
    reference = build(ledger, engine, net.root, tmp_path / "duckdb", watermark=net.head)
    result = spark_build(ledger, cluster, net.root, tmp_path / "out", "--watermark", str(net.head))
    assert result.returncode == 0, result.stderr
    same_as_duckdb(result, reference.path)
    manifest = json.loads(result.stdout)
    assert manifest["engine_settings"] == {"spark.cores.max": "2", "spark.executor.memory": "512m"}
    assert manifest["counts"] == reference.manifest["counts"]


def test_an_executor_writing_to_its_own_disk_never_publishes_a_short_snapshot(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    cluster: Cluster,
    private: Path,
    tmp_path: Path,
) -> None:
    """OUT is the folder the private worker sees as its own tmpfs: its tasks' files never reach
    the driver (the scenario that once published 0 rows under a manifest claiming them all).

    First with both workers, as the issue found it: the right snapshot (every task ran on the
    shared worker) or the clear error. Then with the private worker alone, where every output is
    private: always the error, naming the files whose rows are missing, nothing published; a later
    build into a shared OUT succeeds."""
    net = make_network(ledger, files=8)
    reference = build(ledger, engine, net.root, tmp_path / "duckdb", watermark=net.head)
    out = private / "snapshots"
    missing = r"eligible records, but Spark's output for them is not in .*; nothing published"
    mixed = spark_build(ledger, cluster, net.root, out, "--watermark", str(net.head))
    if mixed.returncode == 0:
        same_as_duckdb(mixed, reference.path)
        out = private / "snapshots-2"
    else:
        assert re.search(missing, one_error_line(mixed))
        assert visible(out) == []
    published = {e.snapshot_id for e in Registry(ledger).snapshots()}
    cluster.kill_worker("shared")
    try:
        alone = spark_build(ledger, cluster, net.root, out, "--watermark", str(net.head))
    finally:
        cluster.add_worker("shared")
    line = one_error_line(alone)
    assert re.search(rf"part-\d+\.parquet: [\d,]+ {missing}", line), line
    assert visible(out) == [] and [p.name for p in out.iterdir() if p.name.endswith(".partial")] == []
    assert {e.snapshot_id for e in Registry(ledger).snapshots()} == published  # nothing new
    later = spark_build(ledger, cluster, net.root, tmp_path / "shared-out", "--watermark", str(net.head))
    assert later.returncode == 0, later.stderr
    same_as_duckdb(later, reference.path)


def test_executors_that_cannot_read_the_input_fail_in_one_line_with_the_trace_in_a_log(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    cluster: Cluster,
    private: Path,
    tmp_path: Path,
) -> None:
    """Only the private worker is left, and the input lives where it sees its empty tmpfs: every
    task fails in the JVM. One line names the stage, the executor and the missing file; the JVM's
    trace is in the log file the line names; nothing is published; a later build succeeds."""
    data = private / "input"
    net = make_network(ledger, files=2, root=data)
    out = tmp_path / "out"
    cluster.kill_worker("shared")
    try:
        result = spark_build(ledger, cluster, net.root, out, "--watermark", str(net.head))
    finally:
        cluster.add_worker("shared")
    line = one_error_line(result)
    # Which job fails first depends on Spark (the footers are read by a job of its own); the
    # line names the phase and the file.
    assert re.match(r"error: --engine spark: (reading|counting) the input.* failed", line), line
    assert str(data / "records") in line and "does not exist" in line, line
    assert "nothing published" in line
    log = Path(line.split("the full trace is in ")[1])
    trace = log.read_text()
    assert "org.apache.spark" in trace and "Traceback" in trace  # the JVM's trace and Python's
    assert visible(out) == [] and Registry(ledger).snapshots() == []
    driver = Path(trace.split("the Spark driver's own log is ")[1].split()[0])
    assert "TaskSetManager" in driver.read_text()  # Spark's own lines went there, not to the terminal
    # The shared worker is back. The private one still cannot read the input, so Spark must not
    # retry a task there: excludeOnFailure (a cluster setting, --spark-conf) sends it elsewhere.
    exclude = ["--spark-conf", "spark.excludeOnFailure.enabled=true"]
    later = spark_build(ledger, cluster, net.root, out, "--watermark", str(net.head), *exclude)
    assert later.returncode == 0, later.stderr
    reference = build(ledger, engine, net.root, tmp_path / "duckdb", watermark=net.head)
    same_as_duckdb(later, reference.path)


def test_a_worker_lost_mid_build_gives_the_right_snapshot_or_nothing(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    cluster: Cluster,
    private: Path,
    tmp_path: Path,
) -> None:
    """SIGKILL the private worker (and its executor) while the build writes: Spark reruns the lost
    tasks on the other executor; the result is the right snapshot or one clear line."""
    net = make_network(ledger, files=8)
    reference = build(ledger, engine, net.root, tmp_path / "duckdb", watermark=net.head)
    out = tmp_path / "out"
    command, env = spark_command(ledger, cluster, net.root, out, "--watermark", str(net.head))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list(out.glob(".snapshot-*.partial/_scratch")):
            break
        time.sleep(0.05)
    cluster.kill_worker("private")
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        cluster.add_worker("private", private=private)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if result.returncode == 0:
        same_as_duckdb(result, reference.path)
    else:
        line = one_error_line(result)
        assert "nothing published" in line
        assert visible(out) == []
