"""``ledger export``: every event as the database holds it, in seq order, up to a watermark.

On SQLite the events are read by the ADBC driver straight into Arrow; on PostgreSQL through the
driver's rows. Both must give what the ledger's own reader gives, value for value.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from consentgate.ledger.exports import EVENT_SCHEMA, export_events
from consentgate.ledger.store import COLUMNS, Ledger
from tests.conftest import register, set_setting


def _expected(ledger: Ledger, watermark: int | None) -> list[dict[str, object]]:
    return [{c: getattr(event, c) for c in COLUMNS} for event in ledger.iter_events(watermark=watermark)]


def _as_rows(table: pa.Table) -> list[dict[str, object]]:
    """The table's rows with instants as int64 µs, as the ledger keeps them."""
    fields = [pa.field(f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in table.schema]
    rows: list[dict[str, object]] = table.cast(pa.schema(fields)).to_pylist()
    return rows


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_export_is_every_event_up_to_the_watermark_value_for_value(
    ledger: Ledger, tmp_path: Path, fmt: str
) -> None:
    for member in range(1, 40):
        register(ledger, member, "DE" if member % 2 else "US", birth_date="1990-02-28")
        set_setting(ledger, member, "genai_improvement", member % 3 == 0, "2025-10-01T00:00:00Z")
    head, _ = ledger.head()
    for watermark in (None, head // 2):
        out = tmp_path / f"events-{watermark}.{fmt}"
        written = export_events(ledger, out, fmt=fmt, watermark=watermark)
        if fmt == "parquet":
            table = pq.read_table(out)
            assert table.schema.equals(EVENT_SCHEMA)
        else:
            table = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types=EVENT_SCHEMA))
        expected = _expected(ledger, watermark)
        assert written == len(expected) == table.num_rows
        assert len(expected) == (head if watermark is None else head // 2)
        assert _as_rows(table.select(list(COLUMNS))) == expected
