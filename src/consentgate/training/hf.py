"""Hugging Face ``datasets`` from a verified snapshot (``pip install 'consentgate[hf]'``).

``to_hf_dataset`` loads the records into memory (an Arrow table, as ``datasets.Dataset`` holds
it); ``to_hf_iterable`` streams them one record batch at a time, one shard per record file, so a
snapshot larger than memory trains too, and a ``DataLoader`` with workers splits the files. Each
call is one ``open_snapshot``: one verification and one recorded read; the run id is in
``info.description``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Unpack

import pyarrow.parquet as pq

from consentgate.training.extras import missing_extra
from consentgate.training.loader import OpenOptions, VerifiedSnapshot, open_snapshot_run

BATCH_ROWS = 10_000
"""Rows per record batch that ``to_hf_iterable`` reads at a time."""


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise missing_extra("the Hugging Face datasets library", "hf", "consentgate.training.hf") from None
    return datasets


def _description(verified: VerifiedSnapshot) -> str:
    return (
        f"consentgate snapshot {verified.entry.snapshot_id} for {verified.read.purpose},"
        f" verified read {verified.run_id}"
    )


def to_hf_dataset(
    snapshot_id: str,
    *,
    purpose: str,
    **options: Unpack[OpenOptions],
) -> Any:
    """The snapshot's records as an in-memory ``datasets.Dataset`` (arguments as ``open_snapshot``)."""
    datasets = _datasets()
    verified = open_snapshot_run(snapshot_id, purpose=purpose, **options)
    table = verified.dataset.to_table()
    return datasets.Dataset(
        table,
        info=datasets.DatasetInfo(description=_description(verified)),
        # The manifest's hash names these rows; the default would hash the whole table.
        fingerprint=verified.entry.manifest_sha256[:16],
    )


def to_hf_iterable(
    snapshot_id: str,
    *,
    purpose: str,
    **options: Unpack[OpenOptions],
) -> Any:
    """The snapshot's records as a streaming ``datasets.IterableDataset``, one shard per record file."""
    datasets = _datasets()
    verified = open_snapshot_run(snapshot_id, purpose=purpose, **options)
    iterable = datasets.IterableDataset.from_generator(
        stream_rows,
        features=datasets.Features.from_arrow_schema(verified.dataset.schema),
        gen_kwargs={"files": [str(p) for p in verified.files]},
    )
    iterable.info.description = _description(verified)
    return iterable


def stream_rows(files: list[str]) -> Iterator[dict[str, Any]]:
    """The rows of ``files`` in order, one record batch in memory at a time."""
    for name in files:
        with pq.ParquetFile(name) as parquet:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                yield from batch.to_pylist()
