"""Hugging Face datasets from a verified snapshot: the in-memory Dataset and the streaming one."""

from __future__ import annotations

from typing import Any

from consentgate.snapshots.registry import Registry
from consentgate.training.hf import to_hf_dataset, to_hf_iterable
from tests.training.conftest import PURPOSE, Published


def test_the_dataset_and_the_iterable_yield_exactly_the_verified_rows(published: Published) -> None:
    """Each is one verified, recorded read; the rows (all columns) equal the snapshot files' rows."""
    options: dict[str, Any] = {"purpose": PURPOSE, "db": published.url, "events_dir": published.events_dir}
    expected = published.rows()

    dataset = to_hf_dataset(published.snapshot_id, **options)
    assert dataset.num_rows == len(expected)
    assert dataset.column_names == published.table().column_names
    assert sorted(dataset, key=lambda r: r["record_id"]) == expected

    iterable = to_hf_iterable(published.snapshot_id, job="stream", **options)
    assert iterable.n_shards == len(published.files())  # one per record file
    assert sorted(iterable, key=lambda r: r["record_id"]) == expected

    first, second = Registry(published.ledger).reads([published.snapshot_id])
    assert (first.job, second.job) == ("training", "stream")
    assert first.run_id in dataset.info.description
    assert second.run_id in iterable.info.description
