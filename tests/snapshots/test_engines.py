"""The DuckDB and Spark engines give the same snapshot: rows, order, types, counts and lineage.

One Spark session (one JVM) serves the whole module. PySpark and Java are required: a missing one
fails the module (CI has both), it is never skipped.
"""

from __future__ import annotations

import hashlib
import random
import socket
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import InputError
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection
from consentgate.policy import load_timeline
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.engines.base import FIXED_SPARK_SETTINGS, parse_spark_conf, recorded_conf
from consentgate.snapshots.engines.spark_engine import (
    DEFAULT_MASTER,
    SETTINGS,
    SparkEngine,
    check_java,
    check_master,
    describe_failure,
    spark_session,
)
from consentgate.snapshots.refresh import RefreshRequest, refresh_snapshot
from consentgate.taxonomy import load_taxonomy
from tests.conftest import FixedClock, at, register, set_setting
from tests.snapshots.histories import (
    IMPORT,
    LATER_EVENT,
    REFRESH_AT,
    SCHEMA,
    T_OCT,
    T,
    apply_later,
    check_refresh_matches_build,
    random_network,
)

AFTER_T = "2025-11-04T00:00:00.000001Z"
MASTER = "local[2]"
SMALL_DATA = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.sql.shuffle.partitions": "2",
}
UNKNOWN_MEMBER = 999_999
CATEGORIES = [
    "profile.skills",
    "content.posts",
    "messages.private",
    "ai.interactions",
    "affiliate.engagement",
]
CREATED = ["2024-01-01T00:00:00Z", T_OCT, "2025-10-01T00:00:00.000001Z", T, AFTER_T]
# id: (country, birth_date, believed_minor)
MEMBERS: dict[int, tuple[str, str | None, bool | None]] = {
    1: ("DE", "1990-05-17", None),  # EEA adult
    2: ("US", "1985-01-01", False),  # ROW adult
    3: ("CN", "1970-07-07", None),  # CN adult
    4: ("GB", "1979-03-03", None),
    5: ("FR", "2007-11-04", None),  # turns 18 on the as-of day
    6: ("FR", "2007-11-05", None),  # turns 18 the day after
    7: ("US", "2008-02-29", None),  # 29 February birth (18 on 1 March 2026)
    8: ("DE", "2004-02-29", None),
    9: ("US", "1980-01-01", None),  # two changes at one instant: off, then on (seq wins)
    10: ("DE", "1980-01-01", None),  # two changes at one instant: on, then off
    11: ("US", "1980-01-01", None),  # opts out exactly at T
    12: ("GB", "1980-01-01", None),  # opts out exactly at T_OCT
    13: ("US", "1980-01-01", None),  # objection pending at T (decided after T)
    14: ("IT", "1980-01-01", None),  # objection upheld before T
    15: ("US", "1980-01-01", None),  # affiliate sharing off exactly at T
    16: ("BR", "1980-01-01", None),
    17: ("US", None, True),  # believed minor
    18: ("IT", None, None),  # age unknown
}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """The module's one session, with the engine's own settings (the engine's getOrCreate reuses it).

    Tuned for tiny inputs on a small machine: no optimising JIT tier (the JVM starts and warms up in
    half the time) and two shuffle partitions.
    """
    yield spark_session(MASTER, SMALL_DATA)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock(), initialise=True)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def decisions() -> DecisionEngine:
    return DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))


def build(
    ledger: Ledger, decisions: DecisionEngine, data: Path, out: Path, engine: str, purpose: str, as_of: str
) -> BuildResult:
    request = BuildRequest(
        data=data,
        purpose=purpose,
        as_of=at(as_of),
        out=out,
        engine=engine,
        spark_master=MASTER if engine == "spark" else None,
        events_dir=out.parent / "events",
    )
    return build_snapshot(request, ledger=ledger, engine=decisions)


def tables(result: BuildResult) -> list[pa.Table]:
    return [pq.read_table(p) for p in sorted((result.path / "records").iterdir())]


def types(table: pa.Table) -> list[tuple[str, pa.DataType, bool]]:
    """Name, type and nullability of every column: the engines must write one schema."""
    return [(f.name, f.type, f.nullable) for f in table.schema]


def assert_same(duck: BuildResult, spark: BuildResult, source: pa.Schema) -> None:
    assert duck.manifest["counts"] == spark.manifest["counts"]
    assert [(f["file"], f["rows"]) for f in duck.manifest["outputs"]["records"]] == [
        (f["file"], f["rows"]) for f in spark.manifest["outputs"]["records"]
    ]
    duck_parts, spark_parts = tables(duck), tables(spark)
    assert len(duck_parts) == len(spark_parts)
    for d, s in zip(duck_parts, spark_parts, strict=True):
        assert types(s) == types(d) == [(f.name, f.type, f.nullable) for f in source]
        assert s.sort_by("record_id").to_pylist() == d.sort_by("record_id").to_pylist()
    by_id = [pa.concat_tables(parts).sort_by("record_id") for parts in (duck_parts, spark_parts)]
    assert by_id[0].to_pylist() == by_id[1].to_pylist()
    members = [pq.read_table(r.path / "members.parquet") for r in (duck, spark)]
    assert types(members[1]) == types(members[0])
    assert members[1].to_pylist() == members[0].to_pylist()
    assert sorted(p.name for p in spark.path.iterdir()) == ["manifest.json", "members.parquet", "records"]
    assert [p.name for p in sorted((spark.path / "records").iterdir())] == [
        f"part-{i:05d}.parquet" for i in range(len(spark_parts))
    ]


def assert_input_order(result: BuildResult, data: Path) -> None:
    """Each output file holds its input file's eligible rows in the input file's order."""
    inputs = sorted((data / "records").glob("*.parquet"))
    for source, part in zip(inputs, tables(result), strict=True):
        position = {rid: i for i, rid in enumerate(pq.read_table(source).column("record_id").to_pylist())}
        order = [position[rid] for rid in part.column("record_id").to_pylist()]
        assert order == sorted(order)


def both(
    ledger: Ledger, decisions: DecisionEngine, data: Path, out: Path, purpose: str, as_of: str
) -> tuple[BuildResult, BuildResult]:
    duck = build(ledger, decisions, data, out / "duckdb", "duckdb", purpose, as_of)
    spark = build(ledger, decisions, data, out / "spark", "spark", purpose, as_of)
    assert_same(duck, spark, pq.read_schema(next((data / "records").iterdir())))
    assert_input_order(spark, data)
    return duck, spark


def edge_network(ledger: Ledger, root: Path) -> Path:
    """MEMBERS with their settings and objections in the ledger; records in three files, the last all late."""
    taxonomy = load_taxonomy()
    for member_id, (country, birth, minor) in MEMBERS.items():
        register(ledger, member_id, country, birth_date=birth, believed_minor=minor)
    set_setting(ledger, 9, "genai_improvement", False, "2025-09-01T00:00:00Z")
    set_setting(ledger, 9, "genai_improvement", True, "2025-09-01T00:00:00Z")
    set_setting(ledger, 10, "genai_improvement", True, "2025-09-01T00:00:00Z")
    set_setting(ledger, 10, "genai_improvement", False, "2025-09-01T00:00:00Z")
    set_setting(ledger, 11, "genai_improvement", False, T)
    set_setting(ledger, 12, "genai_improvement", False, T_OCT)
    set_setting(ledger, 15, "ads_affiliate_sharing", False, T)
    [pending] = file_objection(
        ledger, taxonomy, member_id=13, purposes=["genai.training"], at=at("2025-10-20"), source=IMPORT
    )
    decide_objection(
        ledger, reference=pending.reference, uphold=True, reason="no grounds", at=at("2025-11-10")
    )
    [upheld] = file_objection(
        ledger, taxonomy, member_id=14, purposes=["genai.training"], at=at("2025-09-01"), source=IMPORT
    )
    decide_objection(
        ledger, reference=upheld.reference, uphold=True, reason="no grounds", at=at("2025-09-20")
    )
    rows: list[dict[str, object]] = []
    for member_id in [*MEMBERS, UNKNOWN_MEMBER]:
        for category in [*CATEGORIES, "x.unknown"]:
            for created in CREATED:
                i = len(rows) + 1
                rows.append(
                    {
                        "record_id": i,
                        "member_id": member_id,
                        "category": category,
                        "created_at": at(created),
                        "payload": None if i % 11 == 0 else f"m{member_id}:{category}:{i}",
                        "score": i / 7,
                        "flag": None if i % 5 == 0 else i % 2 == 0,
                        "n": -i if i % 3 else None,
                        "seen_at": None if i % 4 == 0 else at(created) - timedelta(days=i),
                    }
                )
    random.Random(7).shuffle(rows)  # input order is not record_id order
    late = [r for r in rows if r["created_at"] == at(AFTER_T)][:40]
    rest = [r for r in rows if r not in late]
    (root / "records").mkdir(parents=True)
    for index, part in enumerate([rest[: len(rest) // 2], rest[len(rest) // 2 :], late]):
        pq.write_table(pa.Table.from_pylist(part, schema=SCHEMA), root / "records" / f"p{index}.parquet")
    return root


@pytest.mark.parametrize(
    ("purpose", "as_of"),
    [("genai.training", T), ("genai.training", T_OCT), ("ads.affiliate_sharing", T)],
)
def test_edge_cases_agree(
    spark: SparkSession, ledger: Ledger, decisions: DecisionEngine, tmp_path: Path, purpose: str, as_of: str
) -> None:
    data = edge_network(ledger, tmp_path / "net")
    _, result = both(ledger, decisions, data, tmp_path, purpose, as_of)
    counts = result.manifest["counts"]
    assert counts["records_in"] == (len(MEMBERS) + 1) * (len(CATEGORIES) + 1) * len(CREATED)
    assert counts["records_included"] > 0
    assert {"unknown_member", "record_after_as_of"} <= set(counts["excluded_by_reason"])
    assert counts["unknown_categories"] == {"x.unknown": (len(MEMBERS) + 1) * len(CREATED)}
    assert tables(result)[2].num_rows == 0  # the all-late file gives an empty, typed file
    included = {(r["member_id"], r["created_at"]) for t in tables(result) for r in t.to_pylist()}
    members = {m for m, _ in included}
    assert UNKNOWN_MEMBER not in members
    assert not any(c == at(AFTER_T) for _, c in included) if as_of == T else True
    if purpose == "genai.training" and as_of == T:
        assert (2, at(T)) in included  # created exactly at T: included
        assert {5, 9} <= members  # 18 on the as-of day; the later of two simultaneous changes (on)
        assert not {6, 10, 11, 13, 14} & members  # 18 tomorrow; off; opted out at T; objections
    if purpose == "ads.affiliate_sharing":
        assert 2 in members
        assert 15 not in members  # switched off exactly at T


@pytest.mark.parametrize(
    ("seed", "purpose", "as_of"),
    [
        (1, "genai.training", T),
        (2, "genai.training", "2026-02-28"),  # 29 February births still minors...
        (3, "genai.training", "2026-03-01"),  # ...and adults the next day
        (4, "ads.affiliate_sharing", T),
    ],
)
def test_random_networks_agree(
    spark: SparkSession,
    ledger: Ledger,
    decisions: DecisionEngine,
    tmp_path: Path,
    seed: int,
    purpose: str,
    as_of: str,
) -> None:
    random_network(ledger, tmp_path / "net", seed, purpose)
    _, result = both(ledger, decisions, tmp_path / "net", tmp_path, purpose, as_of)
    counts = result.manifest["counts"]
    assert counts["records_in"] == 300
    assert 0 < counts["records_included"] < 300


def sha256s(result: BuildResult) -> dict[str, str]:
    files = [*sorted((result.path / "records").iterdir()), result.path / "members.parquet"]
    return {p.relative_to(result.path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_spark_build_is_byte_identical(
    spark: SparkSession, ledger: Ledger, decisions: DecisionEngine, tmp_path: Path
) -> None:
    data = edge_network(ledger, tmp_path / "net")
    first = build(ledger, decisions, data, tmp_path / "a", "spark", "genai.training", T)
    second = build(ledger, decisions, data, tmp_path / "b", "spark", "genai.training", T)
    assert second.snapshot_id == first.snapshot_id
    assert second.reproduced  # the registry found the same manifest bytes
    assert sha256s(second) == sha256s(first)
    assert (second.path / "manifest.json").read_bytes() == (first.path / "manifest.json").read_bytes()


def test_spark_master(spark: SparkSession) -> None:
    assert SparkEngine().master == DEFAULT_MASTER == "local[*]"
    assert SparkEngine(MASTER).master == MASTER
    # Every build in this module ran with --spark-master local[2] on the module's session.
    assert spark.sparkContext.master == MASTER
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"


def test_duckdb_keeps_input_order(ledger: Ledger, decisions: DecisionEngine, tmp_path: Path) -> None:
    """Eligible rows leave the DuckDB engine in their input order (the join must not reorder them)."""
    data = edge_network(ledger, tmp_path / "net")
    assert_input_order(build(ledger, decisions, data, tmp_path / "out", "duckdb", "genai.training", T), data)


# -- refresh on both engines ----------------------------------------------------------------------


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10_000), later=st.lists(LATER_EVENT, min_size=3, max_size=10), when=REFRESH_AT)
def test_refresh_gives_the_same_snapshot_on_both_engines(
    spark: SparkSession,
    decisions: DecisionEngine,
    seed: int,
    later: list[tuple[str, int, str, str]],
    when: str,
) -> None:
    """refresh(S, T) on Spark: the DuckDB refresh's rows, order, counts and lineage; both equal a
    build at T restricted to S's records."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ledger = Ledger.open(f"sqlite:///{root / 'ledger.db'}", clock=FixedClock(), initialise=True)
        try:
            random_network(ledger, root / "net", seed, "genai.training")
            stale = build(ledger, decisions, root / "net", root / "stale", "duckdb", "genai.training", T)
            apply_later(ledger, later)
            fresh = {
                name: refresh_snapshot(
                    RefreshRequest(
                        snapshot_id=stale.snapshot_id,
                        as_of=at(when),
                        out=root / name,
                        engine=name,
                        spark_master=MASTER if name == "spark" else None,
                        events_dir=root / "events",
                    ),
                    ledger=ledger,
                    engine=decisions,
                )
                for name in ("duckdb", "spark")
            }
            duck, sparked = fresh["duckdb"].build, fresh["spark"].build
            assert_same(duck, sparked, pq.read_schema(next((stale.path / "records").iterdir())))
            assert duck.manifest["debt_removed"] == sparked.manifest["debt_removed"]
            for result in fresh.values():
                check_refresh_matches_build(
                    ledger,
                    decisions,
                    root / "net",
                    stale,
                    result,
                    root / f"full-{result.build.manifest['engine']}",
                )
        finally:
            ledger.close()


def test_a_standalone_master_is_checked_before_spark_starts() -> None:
    """An answering master (here any listening socket) passes; high-availability lists pass when one
    of them answers; a refused one is one error naming every address tried."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        check_master(f"spark://127.0.0.1:{port}")
        check_master(f"spark://127.0.0.1:9,127.0.0.1:{port}")
    check_master("local[2]")  # not a standalone master: Spark's to judge
    with pytest.raises(InputError, match=r"no Spark master answers at spark://127\.0\.0\.1:9 "):
        check_master("spark://127.0.0.1:9", timeout=1)


def test_spark_conf_pairs_are_checked_and_secrets_never_recorded() -> None:
    conf = parse_spark_conf(["spark.executor.memory=4g", "spark.hadoop.fs.s3a.secret.key=abc=d"])
    assert conf == {"spark.executor.memory": "4g", "spark.hadoop.fs.s3a.secret.key": "abc=d"}
    assert recorded_conf(conf) == {
        "spark.executor.memory": "4g",
        "spark.hadoop.fs.s3a.secret.key": "<redacted>",
    }
    for bad in ("executor.memory=4g", "spark.executor.memory", "spark.a b=1"):
        with pytest.raises(InputError, match="--spark-conf: expected KEY=VALUE"):
            parse_spark_conf([bad])
    with pytest.raises(InputError, match=r"spark\.sql\.session\.timeZone is set by consentgate"):
        parse_spark_conf(["spark.sql.session.timeZone=Europe/Berlin"])
    assert set(SETTINGS) >= FIXED_SPARK_SETTINGS  # every fixed setting is one the engine sets


def test_a_failed_spark_job_is_described_in_one_line() -> None:
    """The JVM's message as py4j gives it: the phase, the stage, the executor, the deepest cause."""
    jvm = (
        "An error occurred while calling o99.parquet.\n: org.apache.spark.SparkException: Job aborted"
        " due to stage failure: Task 1 in stage 3.0 failed 4 times, most recent failure: Lost task 1.3"
        " in stage 3.0 (TID 12) (10.0.0.7 executor 2): java.io.FileNotFoundException: File"
        " file:/data/out/part-1.parquet does not exist\n\tat org.apache.spark.Foo.bar(Foo.scala:1)\n"
        "Caused by: java.io.FileNotFoundException: File file:/data/out/part-1.parquet does not exist"
    )
    assert describe_failure(RuntimeError(jvm), "writing the eligible records of part-1.parquet") == (
        "--engine spark: writing the eligible records of part-1.parquet failed in stage 3.0 on executor 2"
        " (10.0.0.7): java.io.FileNotFoundException: File file:/data/out/part-1.parquet does not exist"
    )
    lost = (
        "Job aborted due to stage failure: Task 0 in stage 5.0 failed 4 times, most recent failure:"
        " Lost task 0.3 in stage 5.0 (TID 9) (10.0.0.8 executor 1): ExecutorLostFailure (executor 1"
        " exited caused by one of the running tasks) Reason: Remote RPC client disassociated."
    )
    line = describe_failure(RuntimeError(lost), "counting")
    assert line.startswith("--engine spark: counting failed in stage 5.0 on executor 1 (10.0.0.8): ")
    assert "the executor was lost: ExecutorLostFailure" in line and "\n" not in line


def test_a_missing_java_is_named_before_spark_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match=r"needs a Java runtime \(17 or newer\): JAVA_HOME=.*no-jdk has no"):
        check_java()


def test_required_input_columns_stay_required_on_both_engines(
    spark: SparkSession, ledger: Ledger, decisions: DecisionEngine, tmp_path: Path
) -> None:
    """Spark reads every Parquet column as nullable; the output must still declare NOT NULL where
    the input does (the keys, a timestamp, a string, a double, a bool), as the embedded engine's does."""
    random_network(ledger, tmp_path / "net", 5, "genai.training")
    required = {"record_id", "member_id", "category", "created_at", "payload", "score", "flag"}
    for path in sorted((tmp_path / "net" / "records").glob("*.parquet")):
        table = pq.read_table(path)
        fill = {"category": "x.unknown", "payload": "", "score": 0.0, "flag": False}
        for name, value in fill.items():  # a required column holds no nulls
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.fill_null(table[name], value))
        schema = pa.schema([f.with_nullable(f.name not in required) for f in table.schema])
        pq.write_table(table.cast(schema), path)
    _, sparked = both(ledger, decisions, tmp_path / "net", tmp_path, "genai.training", T)
    written = pq.read_schema(next((sparked.path / "records").iterdir()))
    assert {f.name for f in written if not f.nullable} == required
