"""Exports: the event log (Parquet or CSV) and the as-of state of every member (Arrow/Parquet).

The state export is the input of the snapshot builder: for each member, kind and key the event with
the greatest (effective_at, seq) among those with effective_at <= T and seq <= W. For objection
events the key is the reference, so every objection event in force at T is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from consentgate.exceptions import InputError
from consentgate.ledger.database import sqlite_path
from consentgate.ledger.store import COLUMNS, Ledger
from consentgate.storage import located
from consentgate.timeutil import to_micros

UTC_US = pa.timestamp("us", tz="UTC")
EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("member_id", pa.int64()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("value", pa.string()),
        ("effective_at", UTC_US),
        ("recorded_at", UTC_US),
        ("source", pa.string()),
        ("actor", pa.string()),
        ("idempotency_key", pa.string()),
        ("prev_hash", pa.string()),
        ("hash", pa.string()),
    ]
)
STATE_SCHEMA = pa.schema(
    [
        ("member_id", pa.int64()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("value", pa.string()),
        ("seq", pa.int64()),
        ("effective_at", UTC_US),
        ("source", pa.string()),
    ]
)

STATE_SQL = """
SELECT member_id, kind, key, value, seq, effective_at, source FROM (
  SELECT member_id, kind, key, value, seq, effective_at, source,
         ROW_NUMBER() OVER (PARTITION BY member_id, kind, key
                            ORDER BY effective_at DESC, seq DESC) AS rn
  FROM events WHERE effective_at <= {p} AND seq <= {p}
) latest WHERE rn = 1
ORDER BY member_id, kind, key
"""


def _batches(rows: Iterator[tuple[Any, ...]], schema: pa.Schema, size: int) -> Iterator[pa.RecordBatch]:
    columns: list[list[Any]] = [[] for _ in schema]
    count = 0
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        count += 1
        if count == size:
            yield pa.record_batch(columns, schema=schema)
            columns = [[] for _ in schema]
            count = 0
    if count:
        yield pa.record_batch(columns, schema=schema)


def _event_rows(ledger: Ledger, watermark: int | None) -> Iterator[tuple[Any, ...]]:
    for event in ledger.iter_events(watermark=watermark):
        yield tuple(getattr(event, c) for c in COLUMNS)


def _write(path: Path, fmt: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    if fmt not in ("parquet", "csv"):
        raise InputError(f"--format: expected parquet or csv, got {fmt!r}")
    if not path.parent.is_dir():
        raise InputError(f"--out: folder {path.parent} does not exist")
    tmp = path.with_name(path.name + ".partial")
    rows = 0
    # Timestamps travel as int64 microseconds and are reinterpreted as UTC timestamps: exact,
    # and no per-value datetime conversion.
    writer: pq.ParquetWriter | pacsv.CSVWriter
    try:
        writer = pq.ParquetWriter(tmp, schema) if fmt == "parquet" else pacsv.CSVWriter(tmp, schema)
        try:
            for batch in batches:
                typed = pa.record_batch(
                    [
                        col.view(UTC_US) if f.type == UTC_US else col
                        for col, f in zip(batch.columns, schema, strict=True)
                    ],
                    schema=schema,
                )
                writer.write_batch(typed)
                rows += typed.num_rows
        finally:
            writer.close()
        tmp.replace(path)
    except OSError as exc:  # Arrow names no file: say which one could not be written
        tmp.unlink(missing_ok=True)
        refused = located(exc, path)
        refused.add_note("write")
        raise refused from exc
    return rows


def export_events(ledger: Ledger, path: Path, *, fmt: str, watermark: int | None = None) -> int:
    """Write every event (up to ``watermark``) to ``path``; returns the number of rows."""
    raw_schema = pa.schema(
        [pa.field(f.name, pa.int64() if f.type == UTC_US else f.type) for f in EVENT_SCHEMA]
    )
    database = sqlite_path(str(ledger.engine.url))
    if database is not None:  # read by ADBC straight into Arrow: no Python object per value
        from consentgate.ledger.mirror import MIRROR_SCHEMA, sqlite_event_batches

        assert MIRROR_SCHEMA.equals(raw_schema), "the mirror's columns are the export's"
        upto = ledger.head()[0] if watermark is None else watermark
        return _write(path, fmt, EVENT_SCHEMA, sqlite_event_batches(database, after=0, upto=upto))
    batches = _batches(_event_rows(ledger, watermark), raw_schema, 50_000)
    return _write(path, fmt, EVENT_SCHEMA, batches)


def state_rows(ledger: Ledger, *, at: datetime, watermark: int) -> Iterator[tuple[Any, ...]]:
    sql = STATE_SQL.format(p=ledger._param)
    with ledger.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(sql, (to_micros(at), watermark))
            while True:
                chunk = cursor.fetchmany(50_000)
                if not chunk:
                    return
                yield from chunk
        finally:
            cursor.close()


def state_table(ledger: Ledger, *, at: datetime, watermark: int | None = None) -> pa.Table:
    """The as-of state of every member as an Arrow table (timestamps as UTC microseconds)."""
    mark = ledger.watermark() if watermark is None else watermark
    raw_schema = pa.schema(
        [pa.field(f.name, pa.int64() if f.type == UTC_US else f.type) for f in STATE_SCHEMA]
    )
    batches = list(_batches(state_rows(ledger, at=at, watermark=mark), raw_schema, 100_000))
    table = pa.Table.from_batches(batches, schema=raw_schema)
    return table.set_column(
        table.schema.get_field_index("effective_at"),
        "effective_at",
        table["effective_at"].cast(pa.int64()).combine_chunks().view(UTC_US),
    )


def export_state(
    ledger: Ledger, path: Path, *, at: datetime, watermark: int | None = None, fmt: str = "parquet"
) -> int:
    table = state_table(ledger, at=at, watermark=watermark)
    return _write(path, fmt, STATE_SCHEMA, iter(table.to_batches(max_chunksize=100_000)))
