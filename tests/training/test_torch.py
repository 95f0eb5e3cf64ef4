"""The PyTorch IterableDataset: every verified row exactly once, with or without DataLoader workers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from torch.utils.data import DataLoader

from consentgate.exceptions import InputError
from consentgate.snapshots.registry import Registry
from consentgate.training.torch import SnapshotIterableDataset
from tests.training.conftest import PURPOSE, Published


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r["record_id"])


# On a one-core machine the DataLoader warns that two workers are more than it suggests.
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_rows_and_batches_reach_the_workers_exactly_once(published: Published) -> None:
    snapshot = SnapshotIterableDataset(
        published.snapshot_id, purpose=PURPOSE, db=published.url, events_dir=published.events_dir
    )
    expected = published.rows()
    assert snapshot.num_rows == len(expected)
    assert len(snapshot.units) >= 2  # more than one unit, so two workers each get some
    [read] = Registry(published.ledger).reads([published.snapshot_id])
    assert snapshot.run_id == read.run_id

    alone = list(DataLoader(snapshot, batch_size=None, num_workers=0))
    assert alone == published.table().to_pylist()  # in the files' order
    workers = list(DataLoader(snapshot, batch_size=None, num_workers=2))
    assert len(workers) == len(expected)  # no row twice
    assert by_id(workers) == expected
    assert pickle.loads(pickle.dumps(snapshot)).units == snapshot.units  # noqa: S301 (our own bytes)

    batched = SnapshotIterableDataset(
        published.snapshot_id,
        purpose=PURPOSE,
        db=published.url,
        events_dir=published.events_dir,
        columns=["record_id", "payload"],
        batch_size=100,
    )
    batches = list(DataLoader(batched, batch_size=None, num_workers=2))
    assert all(len(b["record_id"]) <= 100 for b in batches)
    rows = [{"record_id": i, "payload": p} for b in batches for i, p in zip(*b.values(), strict=True)]
    assert by_id(rows) == [{"record_id": r["record_id"], "payload": r["payload"]} for r in expected]
    assert len(Registry(published.ledger).reads([published.snapshot_id])) == 2


def test_unknown_columns_and_empty_batches_are_refused(published: Published) -> None:
    options: dict[str, Any] = {"purpose": PURPOSE, "db": published.url, "events_dir": published.events_dir}
    with pytest.raises(InputError, match="has no column 'salary'"):
        SnapshotIterableDataset(published.snapshot_id, columns=["record_id", "salary"], **options)
    with pytest.raises(InputError, match="batch_size: expected a positive number of rows, got 0"):
        SnapshotIterableDataset(published.snapshot_id, batch_size=0, **options)
