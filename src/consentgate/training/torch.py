"""A PyTorch ``IterableDataset`` over a verified snapshot (``pip install 'consentgate[torch]'``).

Constructing ``SnapshotIterableDataset`` is one ``open_snapshot``: one verification and one
recorded read (``run_id``). Iterating yields the records as dicts, or with ``batch_size`` as dicts of
columns. The unit of work is one row group of one record file: with ``num_workers=N`` worker k
reads units k, k+N, k+2N, … so every row is yielded exactly once across the workers. The object
holds only paths and names, so it pickles to workers under any start method.

Importing this module imports torch (the class is a subclass of torch's); ``consentgate.training``
itself does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Unpack

import pyarrow.parquet as pq

from consentgate.exceptions import InputError
from consentgate.training.extras import missing_extra
from consentgate.training.loader import OpenOptions, open_snapshot_run

try:
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:
    raise missing_extra("PyTorch", "torch", "consentgate.training.torch") from None

DEFAULT_ROWS = 10_000
"""Rows per record batch read at a time when iterating rows."""


class SnapshotIterableDataset(IterableDataset[dict[str, Any]]):
    """The records of a verified snapshot, split across ``DataLoader`` workers by row group.

    Arguments as ``open_snapshot``, plus ``columns`` (default all) and ``batch_size``: ``None``
    yields one dict per row; a number yields dicts of column lists of at most that many rows
    (use ``DataLoader(..., batch_size=None)`` then). Rows come in file order within a worker.
    """

    def __init__(
        self,
        snapshot_id: str,
        *,
        purpose: str,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        **options: Unpack[OpenOptions],
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size: expected a positive number of rows, got {batch_size}")
        verified = open_snapshot_run(snapshot_id, purpose=purpose, **options)
        names = verified.dataset.schema.names
        unknown = [c for c in columns or () if c not in names]
        if unknown:
            raise InputError(
                f"columns: snapshot {snapshot_id} has no column {', '.join(map(repr, unknown))}"
                f" (it has {', '.join(names)})"
            )
        self.snapshot_id = snapshot_id
        self.run_id = verified.run_id
        self.columns = None if columns is None else list(columns)
        self.batch_size = batch_size
        units: list[tuple[str, int]] = []
        for path in verified.files:
            with pq.ParquetFile(path) as parquet:
                units.extend((str(path), group) for group in range(parquet.metadata.num_row_groups))
        self.units = tuple(units)
        """(record file, row group): the units the workers share."""
        self.num_rows = verified.dataset.count_rows()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        units = self.units if worker is None else self.units[worker.id :: worker.num_workers]
        for path, group in units:
            with pq.ParquetFile(path) as parquet:
                batches = parquet.iter_batches(
                    batch_size=self.batch_size or DEFAULT_ROWS, row_groups=[group], columns=self.columns
                )
                for batch in batches:
                    if self.batch_size is None:
                        yield from batch.to_pylist()
                    else:
                        yield batch.to_pydict()
