"""The embedded default: DuckDB in the build's own process."""

from __future__ import annotations

from pathlib import Path

import duckdb

from consentgate.snapshots.engines.base import EngineOutput, Job, ProgressFn


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class DuckDBEngine:
    """Joins records to the eligibility tables that the build already holds in ``con``."""

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput:
        con = self.con
        records = job.out / "records"
        records.mkdir(parents=True)
        columns = ", ".join(f"r.{_quote(c)}" for c in job.dataset.columns)
        out = EngineOutput(record_files=[])
        done = 0
        for index, source in enumerate(job.dataset.records):
            target = records / f"part-{index:05d}.parquet"
            # A hash join does not keep input order; sorting by the row's position in its file
            # does, so the same inputs always give the same bytes.
            con.execute(
                f"""COPY (
                  SELECT {columns} FROM read_parquet({_path(source.path)}, file_row_number = true) r
                  JOIN member_class m ON m.member_id = r.member_id
                  JOIN rules a ON a.class_id = m.class_id AND a.category = r.category
                  WHERE a.allowed AND epoch_us(r.created_at) <= {job.at_us}
                  ORDER BY r.file_row_number
                ) TO {_path(target)} (FORMAT parquet, COMPRESSION zstd)"""
            )
            out.record_files.append(target)
            rows = con.execute(
                f"""SELECT coalesce(m.class_id, 0), r.category, epoch_us(r.created_at) > {job.at_us}, count(*)
                FROM read_parquet({_path(source.path)}) r
                LEFT JOIN member_class m ON m.member_id = r.member_id
                GROUP BY ALL"""
            ).fetchall()
            out.groups.extend((int(c), cat, bool(late), int(n)) for c, cat, late, n in rows)
            done += source.rows
            if progress is not None:
                progress(done)
        con.execute(
            f"""COPY (
              SELECT member_id::BIGINT AS member_id, category, count(*)::BIGINT AS records
              FROM read_parquet({_path(records / "*.parquet")})
              GROUP BY ALL ORDER BY member_id, category
            ) TO {_path(job.out / "members.parquet")} (FORMAT parquet, COMPRESSION zstd)"""
        )
        return out
