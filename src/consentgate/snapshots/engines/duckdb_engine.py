"""The embedded default: Arrow and numpy filter each file in the build's own process, and count
the lineage in the same pass.

Determinism by construction, at any size: each input file is read batch by batch in file order, a
record's class is found by binary search in the members sorted by id, its category's index by
lookup, and a boolean table of (class, category) says whether it is allowed; the filtered batches
are written in order and cut into row groups of exactly ``ROW_GROUP_SIZE`` rows. No hash join is
involved, so nothing depends on a hash table's layout, the thread schedule or memory pressure (a
DuckDB hash join emits a chunk's matches in rounds of hash-chain depth, which reorders a few rows
per million and varied between runs). The counts for the manifest come from the same pass (one
``bincount`` per batch), and so does the lineage: each file's kept (member, category) pairs as one
packed integer key, counted per file (``np.unique``) and merged at the end (the per-file runs are
sorted, so a stable sort merges them), so the input is read once and the output never. Files run in
parallel, one per core; the heavy parts (Parquet reading and writing, ``searchsorted``, ``filter``,
the sorts) release the GIL.
"""

from __future__ import annotations

import itertools
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

        def one(index: int) -> tuple[Path, list[Group], _Pairs | None]:
            source = job.dataset.records[index]
            target = records / f"part-{index:05d}.parquet"
            groups, pairs = _filter_file(
                source.path, target, lookup, job.at_us, self.row_group_size, lineage=job.lineage
            )
            with lock:
                done[0] += source.rows
                if progress is not None:
                    progress(done[0])
            return target, groups, pairs

        with ThreadPoolExecutor(max_workers=min(self.workers, len(job.dataset.records))) as pool:
            results = list(pool.map(one, range(len(job.dataset.records))))
        out = EngineOutput(
            record_files=[target for target, _, _ in results],
            groups_by_file=[groups for _, groups, _ in results],
        )
        if job.lineage:
            found = [pairs for _, _, pairs in results]
            if all(pairs is not None for pairs in found):
                chosen = [p for p in found if p is not None]
                _write_pairs(job.out / "members.parquet", chosen, lookup, self.workers)
            else:  # member ids too large to pack with a category: grouped by DuckDB from the output
                _write_lineage(self.con, records, job.out / "members.parquet")
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


_Pairs = tuple[np.ndarray, np.ndarray]
"""A file's lineage: sorted packed keys ``member_id * slots + category index`` and their records."""


def _filter_file(
    source: Path, target: Path, lookup: _Lookup, at_us: int, row_group_size: int, *, lineage: bool = True
) -> tuple[list[Group], _Pairs | None]:
    """Write the eligible rows of ``source`` to ``target`` in input order; count every record, and
    (``lineage``) the written records per (member, category). The pairs are None when a member id
    is too large to pack with a category index into an int64."""
    parquet = pq.ParquetFile(source)
    schema = parquet.schema_arrow
    counts = np.zeros(lookup.allowed.shape[0] * lookup.slots * 2, dtype=np.int64)
    packable = (1 << 62) // lookup.slots
    kept_keys: list[np.ndarray] | None = [] if lineage else None
    unknown: Counter[tuple[int, str | None, bool]] = Counter()
    with pq.ParquetWriter(
        target,
        schema,
        compression="snappy",
        dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT,
        write_statistics=[c for c in STATISTICS if c in schema.names],
    ) as writer:
        rows_out = _RowGroups(writer, schema, row_group_size)
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
                rows_out.add(batch.filter(pa.array(keep)))
                if kept_keys is not None:
                    members, cats = member_ids[keep], categories[keep]
                    if np.abs(members).max() >= packable:
                        kept_keys = None
                    else:
                        kept_keys.append(members * lookup.slots + cats)
        rows_out.close()
    groups: list[Group] = []
    for key in np.flatnonzero(counts).tolist():
        late_bit, rest = key % 2, key // 2
        class_id, idx = rest // lookup.slots, rest % lookup.slots
        if idx != lookup.unknown:
            groups.append((class_id, lookup.names[idx], bool(late_bit), int(counts[key])))
    groups.extend((c, name, late, n) for (c, name, late), n in sorted(unknown.items(), key=str))
    pairs: _Pairs | None = None
    if kept_keys is not None:
        keys, records = np.unique(
            np.concatenate(kept_keys) if kept_keys else np.zeros(0, np.int64), return_counts=True
        )
        pairs = (keys, records.astype(np.int32))  # a file's records per pair: < 2^31
    return groups, pairs


LINEAGE_BATCH = 1 << 20
"""Rows per row group of ``members.parquet`` (as DuckDB's reader handed them to the writer before)."""


def _write_pairs(target: Path, found: list[_Pairs], lookup: _Lookup, workers: int) -> None:
    """members.parquet from the files' counted pairs, sorted by member and category: the keys are
    cut into ``MERGE_RANGES_PER_WORKER`` ranges of members per worker, each range merged (a stable
    sort of the files' sorted runs is a merge) and summed per key in the workers' threads, and
    written in order as the ranges come back, so only a few ranges' merges are in memory at once."""
    cuts = _ranges([keys for keys, _ in found], workers * MERGE_RANGES_PER_WORKER)
    pieces = [_pieces(pairs, cuts) for pairs in found]  # [file][range]
    found.clear()  # the pieces are views; each file's arrays go once its last range is merged

    def merge(r: int) -> _Pairs:
        return _merge([pieces[f][r] for f in range(len(pieces))])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        _write_ranges(target, pool.map(merge, range(len(cuts) + 1)), lookup)


MERGE_RANGES_PER_WORKER = 4


def _write_ranges(target: Path, parts: Iterator[_Pairs], lookup: _Lookup) -> None:
    """Write the merged ranges (in key order) as members.parquet in row groups of LINEAGE_BATCH."""
    dictionary = pa.array(lookup.names, pa.string())
    with pq.ParquetWriter(target, LINEAGE_SCHEMA, compression="zstd") as writer:
        out = _RowGroups(writer, LINEAGE_SCHEMA, LINEAGE_BATCH)
        for keys, records in parts:
            if not len(keys):
                continue
            out.add(
                pa.record_batch(
                    [
                        pa.array(np.floor_divide(keys, lookup.slots)),
                        dictionary.take(pa.array(np.mod(keys, lookup.slots))),
                        pa.array(records),
                    ],
                    schema=LINEAGE_SCHEMA,
                )
            )
        out.close()


class _RowGroups:
    """Batches into ``writer`` as row groups of exactly ``size`` rows (the last one: the rest),
    however the batches are cut: the file's layout depends on its rows only, never on the batches
    (or threads, or merge ranges) they came in."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema, size: int) -> None:
        self.writer, self.schema, self.size = writer, schema, size
        self.pending: list[pa.RecordBatch] = []
        self.buffered = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.buffered += batch.num_rows
        while self.buffered >= self.size:
            table = pa.Table.from_batches(self.pending)
            self.writer.write_table(table.slice(0, self.size), row_group_size=self.size)
            rest = table.slice(self.size)
            self.pending, self.buffered = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        """Write what is left (fewer than ``size`` rows)."""
        if self.buffered:
            table = pa.Table.from_batches(self.pending, self.schema)
            self.writer.write_table(table, row_group_size=self.size)
        self.pending, self.buffered = [], 0


def _ranges(runs: list[np.ndarray], parts: int) -> list[int]:
    """Keys that cut the sorted ``runs`` into ``parts`` ranges of about equal shares (a sample)."""
    samples = [run[:: max(1, len(run) // 1024)] for run in runs if len(run)]
    if not samples or parts <= 1:
        return []
    sample = np.sort(np.concatenate(samples))
    return sorted({int(sample[len(sample) * i // parts]) for i in range(1, parts)})


def _pieces(pairs: _Pairs, cuts: list[int]) -> list[_Pairs]:
    """``pairs`` cut before each of ``cuts`` (len(cuts) + 1 pieces, in key order)."""
    keys, records = pairs
    edges = [0, *np.searchsorted(keys, cuts).tolist(), len(keys)]
    return [(keys[a:b], records[a:b]) for a, b in itertools.pairwise(edges)]


def _slots(categories: int) -> int:
    """A power of two above the number of categories; the last slot means "not in the taxonomy"."""
    slots = 64
    while slots - 1 <= categories:
        slots *= 2
    return slots


def _merge(found: list[_Pairs]) -> _Pairs:
    """Sorted runs of (key, records) merged and summed per key."""
    keys = np.concatenate([k for k, _ in found]) if found else np.zeros(0, np.int64)
    records = np.concatenate([n for _, n in found]).astype(np.int64) if found else np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    keys, records = keys[order], records[order]
    if len(keys):
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        keys, records = keys[starts], np.add.reduceat(records, starts)
    return keys, records


def _write_lineage(con: duckdb.DuckDBPyConnection, records: Path, target: Path) -> None:
    """members.parquet grouped by DuckDB from the written records (member ids beyond what packs)."""
    source = f"read_parquet({_path(records / '*.parquet')})"
    con.execute(
        f"""COPY (
          SELECT member_id::BIGINT AS member_id, category, count(*)::BIGINT AS records
          FROM {source} GROUP BY ALL ORDER BY member_id, category
        ) TO {_path(target)} (FORMAT parquet, COMPRESSION zstd)"""
    )
