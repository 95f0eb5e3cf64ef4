"""The embedded engine's lineage, counted in the filtering pass: ``members.parquet`` must hold what
grouping the written records gives, for any number of files, threads and row groups, and for
member ids too large to pack with a category (then DuckDB groups the written records)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.snapshots.dataset import open_dataset
from consentgate.snapshots.engines import duckdb_engine
from consentgate.snapshots.engines.base import LINEAGE_SCHEMA, Job
from consentgate.snapshots.engines.duckdb_engine import DuckDBEngine
from consentgate.timeutil import to_micros

T = datetime(2025, 11, 3, tzinfo=UTC)
CATEGORIES = ["content.posts", "profile.skills", "profile.headline", "ai.interactions"]


def _network(folder: Path, member_ids: np.ndarray, files: int, rows: int, seed: int) -> None:
    """``files`` record files whose members come from ``member_ids`` in random order (each member's
    records spread over every file), some created after T, one category never allowed."""
    rng = np.random.default_rng(seed)
    (folder / "records").mkdir(parents=True)
    first = 0
    for index in range(files):
        created = rng.integers(to_micros(T) - 10**12, to_micros(T) + 10**11, rows)
        table = pa.table(
            {
                "record_id": pa.array(np.arange(first, first + rows), pa.int64()),
                "member_id": pa.array(rng.choice(member_ids, rows), pa.int64()),
                "category": pa.array(rng.choice(CATEGORIES, rows), pa.string()),
                "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(table, folder / "records" / f"part-{index}.parquet", row_group_size=1_000)
        first += rows


def _eligibility(member_ids: np.ndarray) -> duckdb.DuckDBPyConnection:
    """Two classes: odd members may use three categories, even members one; ai.interactions never."""
    con = duckdb.connect()
    classes = np.where(member_ids % 2 == 1, 1, 2).astype(np.int32)
    con.register("mc", pa.table({"member_id": member_ids, "class_id": classes}))
    con.execute("CREATE TABLE member_class AS SELECT * FROM mc")
    rules = [
        (c, cat, (c == 1 and cat != "ai.interactions") or (c == 2 and cat == "content.posts"), "r", "l")
        for c in (0, 1, 2)
        for cat in CATEGORIES
    ]
    con.execute(
        "CREATE TABLE rules (class_id INTEGER, category VARCHAR, allowed BOOLEAN, reason VARCHAR,"
        " late_reason VARCHAR)"
    )
    con.executemany("INSERT INTO rules VALUES (?, ?, ?, ?, ?)", rules)
    return con


def _grouped(out: Path) -> pa.Table:
    relation = duckdb.sql(
        f"SELECT member_id::BIGINT AS member_id, category, count(*)::BIGINT AS records"
        f" FROM read_parquet('{out}/records/*.parquet') GROUP BY ALL ORDER BY member_id, category"
    )
    assert relation is not None
    return relation.to_arrow_table()


@pytest.mark.parametrize(
    ("workers", "ids"),
    [(1, "small"), (2, "small"), (5, "small"), (3, "beyond packing")],
)
def test_lineage_counted_in_the_pass_equals_grouping_the_written_records(
    workers: int, ids: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_engine, "LINEAGE_BATCH", 200)  # several row groups, cut across ranges
    member_ids = np.arange(1, 400, dtype=np.int64)
    if ids == "beyond packing":
        member_ids = np.concatenate([member_ids, [2**61 + 1, 2**62 - 1]])  # x 64 slots overflows int64
    _network(tmp_path / "net", member_ids, files=6, rows=3_000, seed=workers)
    dataset = open_dataset(tmp_path / "net")
    out = tmp_path / "out"
    out.mkdir()
    engine = DuckDBEngine(_eligibility(member_ids), workers=workers)
    engine.run(Job(dataset=dataset, at_us=to_micros(T), eligibility=tmp_path / "unused", out=out))
    lineage = pq.read_table(out / "members.parquet")
    assert lineage.schema.equals(LINEAGE_SCHEMA)
    expected = _grouped(out)
    assert expected.num_rows > 600
    assert lineage.equals(expected.cast(LINEAGE_SCHEMA))
    if ids == "small":
        assert pq.ParquetFile(out / "members.parquet").metadata.num_row_groups == -(-lineage.num_rows // 200)


def test_the_lineage_bytes_do_not_depend_on_the_number_of_threads(tmp_path: Path) -> None:
    member_ids = np.arange(1, 2_000, dtype=np.int64)
    _network(tmp_path / "net", member_ids, files=4, rows=5_000, seed=9)
    dataset = open_dataset(tmp_path / "net")
    written = []
    for workers in (1, 2, 4):
        out = tmp_path / f"out{workers}"
        out.mkdir()
        DuckDBEngine(_eligibility(member_ids), workers=workers).run(
            Job(dataset=dataset, at_us=to_micros(T), eligibility=tmp_path / "unused", out=out)
        )
        written.append((out / "members.parquet").read_bytes())
    assert written[0] == written[1] == written[2]
