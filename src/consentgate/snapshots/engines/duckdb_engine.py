"""The embedded default: Arrow and numpy filter each file in the build's own process; DuckDB
aggregates the lineage.

Determinism by construction, at any size: each input file is read batch by batch in file order, a
record's class is found by binary search in the members sorted by id, its category's index by
lookup, and a boolean table of (class, category) says whether it is allowed; the filtered batches
are written in order and cut into row groups of exactly ``ROW_GROUP_SIZE`` rows. No hash join is
involved, so nothing depends on a hash table's layout, the thread schedule or memory pressure (a
DuckDB hash join emits a chunk's matches in rounds of hash-chain depth, which reorders a few rows
per million and varied between runs). The counts for the manifest come from the same pass (one
``bincount`` per batch), so the input is read once. Files run in parallel, one per core; the heavy
parts (Parquet reading and writing, ``searchsorted``, ``filter``) release the GIL.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consentgate.snapshots.dataset import damaged
from consentgate.snapshots.eligibility import UNKNOWN_CATEGORY
from consentgate.snapshots.engines.base import LINEAGE_SCHEMA, EngineOutput, Group, Job, ProgressFn

ROW_GROUP_SIZE = 1_000_000
BATCH_ROWS = 1 << 16
DENSE_FACTOR = 4
"""Look classes up in an array indexed by member id when ids stay below 4 x the members (+1M)."""
DICTIONARY_PAGE_LIMIT = 64 << 10
# A small dictionary page makes the writer give up dictionary encoding of near-unique text
# (payloads) early; low-cardinality columns (categories, codes) keep their dictionaries. Writing
# 2.5M synthetic records took 0.65 s instead of 1.9 s with pyarrow's 1 MiB default.
STATISTICS = ("record_id", "member_id", "category", "created_at")
"""Columns whose min/max statistics are written. Payload columns get none: min/max over 2M random
16-byte strings took 0.7 s of a 1.8 s write, and no reader prunes on a payload's range."""
WORKERS: int | None = None
"""Files filtered at once (default: one per core); tests raise it to force many threads."""
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}  # ns: divided by 1,000


def _path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class _Lookup:
    """The eligibility relation as arrays: sorted member ids → class, (class, category) → allowed."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        table = con.sql("SELECT member_id, class_id FROM member_class ORDER BY member_id").to_arrow_table()
        self.members = table["member_id"].to_numpy().astype(np.int64)
        self.classes = table["class_id"].to_numpy().astype(np.int64)
        self.names = [
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT category FROM rules WHERE category <> '{UNKNOWN_CATEGORY}' ORDER BY 1"
            ).fetchall()
        ]
        self.slots = _slots(len(self.names))
        self.unknown = self.slots - 1
        self.value_set = pa.array(self.names, pa.string())
        top = int(con.execute("SELECT coalesce(max(class_id), 0) FROM rules").fetchall()[0][0])
        self.allowed = np.zeros((top + 1, self.slots), dtype=bool)
        index = {name: i for i, name in enumerate(self.names)}
        for class_id, category in con.execute(
            f"SELECT class_id, category FROM rules WHERE allowed AND category <> '{UNKNOWN_CATEGORY}'"
        ).fetchall():
            self.allowed[int(class_id), index[str(category)]] = True

        # Member ids are usually dense: then a record's class is one gather from an array indexed by
        # id (5M lookups in 0.1 s); a binary search over 2M ids costs 40 times that in cache misses.
        self.dense: np.ndarray | None = None
        if (
            len(self.members)
            and self.members[0] >= 0
            and self.members[-1] < DENSE_FACTOR * len(self.members) + (1 << 20)
        ):
            self.dense = np.zeros(int(self.members[-1]) + 1, dtype=np.int32)
            self.dense[self.members] = self.classes

    def class_of(self, member_ids: np.ndarray) -> np.ndarray:
        """Each record's class; 0 (the unknown member) for ids the ledger does not know as of T."""
        if not len(self.members):
            return np.zeros(len(member_ids), dtype=np.int64)
        if self.dense is not None:
            inside = (member_ids >= 0) & (member_ids < len(self.dense))
            return np.where(inside, self.dense[np.where(inside, member_ids, 0)], 0).astype(np.int64)
        position = np.minimum(np.searchsorted(self.members, member_ids), len(self.members) - 1)
        return np.where(self.members[position] == member_ids, self.classes[position], 0)

    def category_of(self, categories: pa.Array) -> np.ndarray:
        """Each record's category index; ``unknown`` for null and for keys the taxonomy lacks."""
        found = pc.index_in(categories, value_set=self.value_set)
        return np.asarray(pc.fill_null(found, self.unknown).to_numpy(), dtype=np.int64)


class DuckDBEngine:
    """Filters the records by the eligibility tables that the build holds in ``con``."""

    name = "duckdb"

    def __init__(
        self, con: duckdb.DuckDBPyConnection, *, workers: int | None = None, row_group_size: int | None = None
    ) -> None:
        self.con = con
        self.workers = workers or WORKERS or os.cpu_count() or 1
        self.row_group_size = row_group_size or ROW_GROUP_SIZE

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput:
        records = job.out / "records"
        records.mkdir(parents=True)
        lookup = _Lookup(self.con)
        lock = threading.Lock()
        done = [0]

        def one(index: int) -> tuple[Path, list[Group]]:
            source = job.dataset.records[index]
            target = records / f"part-{index:05d}.parquet"
            groups = _filter_file(source.path, target, lookup, job.at_us, self.row_group_size)
            with lock:
                done[0] += source.rows
                if progress is not None:
                    progress(done[0])
            return target, groups

        with ThreadPoolExecutor(max_workers=min(self.workers, len(job.dataset.records))) as pool:
            results = list(pool.map(one, range(len(job.dataset.records))))
        out = EngineOutput(
            record_files=[target for target, _ in results], groups_by_file=[groups for _, groups in results]
        )
        if job.lineage:
            indexes = pa.array(range(len(lookup.names)), pa.int64())
            self.con.register("cats_src", pa.table({"category": lookup.names, "idx": indexes}))
            _write_lineage(self.con, records, job.out / "members.parquet", lookup.names, lookup.slots)
            self.con.unregister("cats_src")
        return out


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column as int64 µs since the epoch (sub-µs truncated toward the past, like DuckDB)."""
    unit = column.type.unit
    raw = np.asarray(pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    return raw // 1_000 if unit == "ns" else raw * _MICROS[unit]


def _batches(parquet: pq.ParquetFile, source: Path) -> Iterator[pa.RecordBatch]:
    """The file's batches; a damaged page (its footer read fine) is an input error naming the file."""
    batches = parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise damaged(source, exc) from None
        yield batch


def _filter_file(source: Path, target: Path, lookup: _Lookup, at_us: int, row_group_size: int) -> list[Group]:
    """Write the eligible rows of ``source`` to ``target`` in input order; count every record."""
    parquet = pq.ParquetFile(source)
    counts = np.zeros(lookup.allowed.shape[0] * lookup.slots * 2, dtype=np.int64)
    unknown: Counter[tuple[int, str | None, bool]] = Counter()
    pending: list[pa.RecordBatch] = []
    buffered = 0
    with pq.ParquetWriter(
        target,
        parquet.schema_arrow,
        compression="snappy",
        dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT,
        write_statistics=[c for c in STATISTICS if c in parquet.schema_arrow.names],
    ) as writer:
        for batch in _batches(parquet, source):
            member_ids = batch.column("member_id").to_numpy(zero_copy_only=False).astype(np.int64)
            classes = lookup.class_of(member_ids)
            categories = lookup.category_of(batch.column("category"))
            late = _micros(batch.column("created_at")) > at_us
            counts += np.bincount((classes * lookup.slots + categories) * 2 + late, minlength=len(counts))
            if (categories == lookup.unknown).any():
                strange = np.flatnonzero(categories == lookup.unknown)
                names = batch.column("category").take(pa.array(strange)).to_pylist()
                for i, name in zip(strange.tolist(), names, strict=True):
                    unknown[(int(classes[i]), name, bool(late[i]))] += 1
            keep = lookup.allowed[classes, categories] & ~late
            if keep.any():
                pending.append(batch.filter(pa.array(keep)))
                buffered += pending[-1].num_rows
            while buffered >= row_group_size:  # row groups of exactly row_group_size rows
                table = pa.Table.from_batches(pending)
                writer.write_table(table.slice(0, row_group_size), row_group_size=row_group_size)
                rest = table.slice(row_group_size)
                pending, buffered = rest.to_batches(), rest.num_rows
        if buffered:
            writer.write_table(
                pa.Table.from_batches(pending, parquet.schema_arrow), row_group_size=row_group_size
            )
    groups: list[Group] = []
    for key in np.flatnonzero(counts).tolist():
        late_bit, rest = key % 2, key // 2
        class_id, idx = rest // lookup.slots, rest % lookup.slots
        if idx != lookup.unknown:
            groups.append((class_id, lookup.names[idx], bool(late_bit), int(counts[key])))
    groups.extend((c, name, late, n) for (c, name, late), n in sorted(unknown.items(), key=str))
    return groups


def _slots(categories: int) -> int:
    """A power of two above the number of categories; the last slot means "not in the taxonomy"."""
    slots = 64
    while slots - 1 <= categories:
        slots *= 2
    return slots


def _write_lineage(
    con: duckdb.DuckDBPyConnection, records: Path, target: Path, names: list[str], slots: int
) -> None:
    """members.parquet: (member_id, category, records) sorted, from the eligible records.

    Grouping and sorting on one integer (member_id * slots + category index) costs a third of
    grouping on (member_id, category) and sorting by the string; the key is decoded in Arrow.
    """
    source = f"read_parquet({_path(records / '*.parquet')})"
    bound = con.execute(f"SELECT max(abs(member_id::BIGINT)) FROM {source}").fetchall()[0]
    if bound[0] is None or int(bound[0]) >= (1 << 62) // slots:
        con.execute(
            f"""COPY (
              SELECT member_id::BIGINT AS member_id, category, count(*)::BIGINT AS records
              FROM {source} GROUP BY ALL ORDER BY member_id, category
            ) TO {_path(target)} (FORMAT parquet, COMPRESSION zstd)"""
        )
        return
    reader = con.sql(
        f"""SELECT r.member_id::BIGINT * {slots} + c.idx AS k, count(*)::BIGINT AS n
        FROM {source} r JOIN cats_src c ON c.category = r.category GROUP BY k ORDER BY k"""
    ).to_arrow_reader(1 << 20)
    dictionary = pa.array(names, pa.string())
    with pq.ParquetWriter(target, LINEAGE_SCHEMA, compression="zstd") as writer:
        for batch in reader:
            keys = batch.column(0).to_numpy()
            writer.write_batch(
                pa.record_batch(
                    [
                        pa.array(np.floor_divide(keys, slots)),
                        dictionary.take(pa.array(np.mod(keys, slots))),
                        batch.column(1),
                    ],
                    schema=LINEAGE_SCHEMA,
                )
            )
