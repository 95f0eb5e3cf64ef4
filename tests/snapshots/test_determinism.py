"""Determinism at any size: the same inputs, policy and watermark give the same bytes, whatever the
thread schedule and however many row groups the writers cut.

Small data is made to behave like large data: many input files filtered by more threads than cores,
and row groups of a few thousand rows, so every file has several row groups and writers interleave.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots import synth
from consentgate.snapshots.engines import duckdb_engine
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.synth import synthesize
from tests.snapshots.conftest import build

REBUILDS = 10


def digests(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def busy_writers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight input files, four writer threads on two cores, row groups of 2,000 rows."""
    monkeypatch.setattr(synth, "FILE_ROWS", 15_000)
    monkeypatch.setattr(synth, "GROUP_ROWS", 4_000)
    monkeypatch.setattr(duckdb_engine, "ROW_GROUP_SIZE", 2_000)
    monkeypatch.setattr(duckdb_engine, "WORKERS", 4)


def test_rebuilds_after_deleting_the_folder_are_the_same_snapshot(
    sqlite_ledger: Ledger, engine: DecisionEngine, tmp_path: Path, busy_writers: None
) -> None:
    """Ten rebuilds of a deleted snapshot: the same id, the same manifest, the same bytes; each is
    registered as a reproduction of the first."""
    data = tmp_path / "net"
    synthesize(data, engine.taxonomy, members=3_000, records=120_000, seed=5, ledger=sqlite_ledger)
    out = tmp_path / "out"
    first = build(sqlite_ledger, engine, data, out, as_of="2025-11-03T00:00:00Z")
    records = sorted((first.path / "records").glob("*.parquet"))
    assert len(records) == 8
    assert all(pq.ParquetFile(p).metadata.num_row_groups >= 2 for p in records[:-1])
    expected = digests(first.path)
    for _ in range(REBUILDS):
        shutil.rmtree(first.path)
        again = build(sqlite_ledger, engine, data, out, as_of="2025-11-03T00:00:00Z")
        assert again.snapshot_id == first.snapshot_id
        assert again.reproduced
        assert digests(again.path) == expected
    assert [s.snapshot_id for s in Registry(sqlite_ledger).snapshots()] == [first.snapshot_id]
