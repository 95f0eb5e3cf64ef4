"""The embedded default: DuckDB in the build's own process.

Determinism without a sort: each input file is filtered by its own single-threaded DuckDB
connection whose join keeps the records as the probe side, so rows leave in scan order and the
writer always cuts the same row groups;
files run in parallel, one per core. (A multi-threaded hash join reorders rows; restoring input
order with ORDER BY file_row_number cost a third more on 10M records.)
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.snapshots.eligibility import UNKNOWN_CATEGORY
from consentgate.snapshots.engines.base import EngineOutput, Group, Job, ProgressFn

LINEAGE_SCHEMA = pa.schema([("member_id", pa.int64()), ("category", pa.string()), ("records", pa.int64())])
ROW_GROUP_SIZE = 1_000_000
WORKERS: int | None = None
"""Files filtered at once (default: one per core); tests raise it to force many threads."""
# A small dictionary limit makes the writer give up dictionary encoding of near-unique text
# (payloads) early; low-cardinality columns (categories, codes) still get dictionaries. On 5M
# synthetic records this wrote 18 % faster than DuckDB's default limit.


def write_options(row_group_size: int) -> str:
    return f"FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {row_group_size}, DICTIONARY_SIZE_LIMIT 1000"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class DuckDBEngine:
    """Joins records to the eligibility tables that the build holds in ``con``."""

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
        member_class = self.con.sql("SELECT member_id, class_id FROM member_class").to_arrow_table()
        rules = self.con.sql("SELECT class_id, category FROM rules WHERE allowed").to_arrow_table()
        names = [
            str(r[0])
            for r in self.con.execute(
                f"SELECT DISTINCT category FROM rules WHERE category <> '{UNKNOWN_CATEGORY}' ORDER BY 1"
            ).fetchall()
        ]
        slots = _slots(len(names))
        cats = pa.table({"category": names, "idx": pa.array(range(len(names)), pa.int64())})
        # fetchall, not fetchone: DuckDB 2 keeps a fetchone() result open and refuses the next call.
        memory = self.con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
        columns = ", ".join(f"r.{_quote(c)}" for c in job.dataset.columns)
        lock = threading.Lock()
        done = [0]
        local = threading.local()

        def connection() -> duckdb.DuckDBPyConnection:
            con: duckdb.DuckDBPyConnection | None = getattr(local, "con", None)
            if con is None:
                con = duckdb.connect(config={"threads": 1})
                # Keep the plan as written: the records are the probe side, so rows leave the join
                # in scan order. Left to itself the optimiser builds on the records when they are
                # the smaller side, and rows come out in hash-table order.
                con.execute("SET disabled_optimizers = 'join_order,build_side_probe_side'")
                if memory is not None:
                    con.execute(f"SET memory_limit = '{memory[0]}'")
                con.register("member_class_src", member_class)
                con.register("rules_src", rules)
                con.register("cats_src", cats)
                con.execute("CREATE TABLE member_class AS SELECT * FROM member_class_src")
                con.execute("CREATE TABLE rules AS SELECT * FROM rules_src")
                con.execute("CREATE TABLE cats AS SELECT * FROM cats_src")
                local.con = con
                opened.append(con)
            return con

        def one(index: int) -> tuple[Path, list[Group]]:
            source = job.dataset.records[index]
            target = records / f"part-{index:05d}.parquet"
            con = connection()
            con.execute(
                f"""COPY (
                  SELECT {columns} FROM read_parquet({_path(source.path)}) r
                  JOIN member_class m ON m.member_id = r.member_id
                  JOIN rules a ON a.class_id = m.class_id AND a.category = r.category
                  WHERE epoch_us(r.created_at) <= {job.at_us}
                ) TO {_path(target)} ({write_options(self.row_group_size)})"""
            )
            groups = _counts(con, source.path, job.at_us, names, slots)
            with lock:
                done[0] += source.rows
                if progress is not None:
                    progress(done[0])
            return target, groups

        opened: list[duckdb.DuckDBPyConnection] = []
        try:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(job.dataset.records))) as pool:
                results = list(pool.map(one, range(len(job.dataset.records))))
        finally:
            for con in opened:
                con.close()
        out = EngineOutput(
            record_files=[target for target, _ in results], groups_by_file=[groups for _, groups in results]
        )
        self.con.register("cats_src", cats)
        _write_lineage(self.con, records, job.out / "members.parquet", names, slots)
        self.con.unregister("cats_src")
        return out


def _slots(categories: int) -> int:
    """A power of two above the number of categories; the last slot means "not in the taxonomy"."""
    slots = 64
    while slots - 1 <= categories:
        slots *= 2
    return slots


def _counts(
    con: duckdb.DuckDBPyConnection, source: Path, at_us: int, names: list[str], slots: int
) -> list[Group]:
    """(class, category, late, records) over one input file, grouped on one packed integer key."""
    unknown = slots - 1
    rows = con.execute(
        f"""SELECT (coalesce(m.class_id, 0) * {slots} + coalesce(c.idx, {unknown})) * 2
                   + (epoch_us(r.created_at) > {at_us})::INTEGER AS k, count(*)
        FROM read_parquet({_path(source)}) r
        LEFT JOIN member_class m ON m.member_id = r.member_id
        LEFT JOIN cats c ON c.category = r.category
        GROUP BY k"""
    ).fetchall()
    groups: list[Group] = []
    has_unknown = False
    for key, n in rows:
        late, rest = int(key) % 2, int(key) // 2
        class_id, idx = rest // slots, rest % slots
        if idx == unknown:
            has_unknown = True
            continue
        groups.append((class_id, names[idx], bool(late), int(n)))
    if has_unknown:  # the manifest lists unknown categories by name: one more, narrow, query
        rows = con.execute(
            f"""SELECT coalesce(m.class_id, 0), r.category, epoch_us(r.created_at) > {at_us}, count(*)
            FROM read_parquet({_path(source)}) r
            LEFT JOIN member_class m ON m.member_id = r.member_id
            LEFT JOIN cats c ON c.category = r.category
            WHERE c.idx IS NULL GROUP BY ALL"""
        ).fetchall()
        groups.extend((int(c), cat, bool(late), int(n)) for c, cat, late, n in rows)
    return groups


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
