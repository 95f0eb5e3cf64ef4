"""Reading tabular input (CSV or Parquet), with errors that name the file.

CSV columns are read as text; Parquet columns keep their types, so the import fast path does not
render and re-parse them. ``column_text`` gives any column as text for the row-by-row validator.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from consentgate.exceptions import ImportRowError, InputError

MAX_FIELD_BYTES = 1 << 20
"""The longest field an import takes (1 MiB; the longest real field, a policy note, is far shorter)."""
_BLOCK = 4 * MAX_FIELD_BYTES
"""Arrow's CSV block: a row must fit in one, so rows up to 4 MiB are read and then checked."""
_PLAIN_TYPES = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_date,
    pa.types.is_timestamp,
    pa.types.is_null,
)


def read_table(path: Path) -> pa.Table:
    """Read a CSV (UTF-8, header row; every column text) or a Parquet file (typed columns)."""
    if path.is_dir():
        raise InputError(f"{path}: a folder; expected a .csv or .parquet file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            _check_names(path, pq.read_schema(path).names)  # Arrow cannot read a table with twins
            table = pq.read_table(path)
        elif suffix in (".csv", ".txt"):
            table = _read_csv(path)
        else:
            raise InputError(f"{path}: expected a .csv or .parquet file")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise InputError(f"{path}: cannot read the file ({_first_line(exc)})") from None
    _check_shape(path, table)
    return table


def _check_names(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ImportRowError(str(path), 1, name, "the column appears twice in the header")
        seen.add(name)


def _check_shape(path: Path, table: pa.Table) -> None:
    """Columns by name once each, of plain types, and no field longer than ``MAX_FIELD_BYTES``."""
    _check_names(path, table.column_names)
    for field in table.schema:
        if not any(test(field.type) for test in _PLAIN_TYPES):
            raise ImportRowError(
                str(path),
                1,
                field.name,
                f"expected text, numbers, booleans or timestamps, found {field.type}",
            )
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table[field.name]
            if len(column) and (pc.max(pc.binary_length(column)).as_py() or 0) > MAX_FIELD_BYTES:
                index = pc.index(pc.greater(pc.binary_length(column), MAX_FIELD_BYTES), True).as_py()
                where = index + 2 if path.suffix.lower() != ".parquet" else index + 1
                raise ImportRowError(
                    str(path),
                    where,
                    field.name,
                    f"a field longer than {MAX_FIELD_BYTES >> 20} MiB (the limit of an import)",
                )


def as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as text: timestamps in ISO 8601 UTC, booleans as true/false, nulls kept."""
    if pa.types.is_timestamp(column.type):
        return _timestamp_text(column)
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return pc.cast(column, pa.string())


def _read_csv(path: Path) -> pa.Table:
    with path.open("rb") as handle:
        raw = handle.readline()
    try:
        header = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise ImportRowError(
            str(path),
            1,
            "(header)",
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); expected a UTF-8 CSV file",
        ) from None
    names = [n.strip() for n in header.split(",")] if header else []
    if not names or names == [""]:
        raise InputError(f"{path}: empty file (expected a header row)")
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(block_size=_BLOCK), convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):
            raise InputError(
                f"{path}: a row longer than {_BLOCK >> 20} MiB (a field may be at most"
                f" {MAX_FIELD_BYTES >> 20} MiB); refused"
            ) from None
        raise _locate_csv_problem(path, len(names), exc) from None


def _locate_csv_problem(path: Path, width: int, exc: Exception) -> InputError:
    """Arrow's CSV errors do not give row numbers; find the row with Python's csv module."""
    import csv

    number = 0
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if row and len(row) != width:
                    return ImportRowError(
                        str(path),
                        number,
                        "(row)",
                        f"expected {width} fields as in the header, found {len(row)}",
                    )
    except csv.Error as problem:
        return InputError(f"{path}: not valid CSV (near row {number + 1}: {problem})")
    return InputError(f"{path}: not valid CSV ({_first_line(exc)})")


def _timestamp_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type.tz is None:
        # A naive timestamp column would have to be guessed into UTC: refuse by making it text
        # without offset, which the validator then rejects with the row number.
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
    utc = pc.cast(column, pa.timestamp("us", tz="UTC"))
    # Arrow's %S already carries the fraction (…:05.123456), so no %f here.
    return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")


def file_rows(path: Path) -> list[int] | None:
    """For a CSV file: the file row (the header is row 1) of each data row as Arrow reads them.

    Arrow skips blank lines and joins quoted multi-line fields, so data row i is not always file
    row i + 2. Only computed when an error needs a row number. None for Parquet.
    """
    if path.suffix.lower() == ".parquet":
        return None
    import csv

    rows: list[int] = []
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
            for number, record in enumerate(csv.reader(handle), start=1):
                if number > 1 and record:
                    rows.append(number)
    except csv.Error:
        return None  # rows past a field Python's csv cannot read: errors name Arrow's row instead
    return rows


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_columns(path: Path, table: pa.Table, required: list[str], optional: list[str]) -> None:
    names = table.column_names
    expected = ",".join(required + [f"[{o}]" for o in optional])
    for name in required:
        if name not in names:
            raise ImportRowError(str(path), 1, name, f"missing column (expected header {expected})")
    for name in names:
        if name not in required and name not in optional:
            raise ImportRowError(str(path), 1, name, f"unexpected column (expected header {expected})")


def column_text(table: pa.Table, name: str) -> list[str]:
    if name not in table.column_names:
        return [""] * table.num_rows
    return [v if v is not None else "" for v in as_text(table[name]).to_pylist()]
