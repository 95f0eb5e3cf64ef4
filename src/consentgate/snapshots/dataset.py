"""The network dataset a build reads (DESIGN §6), checked before anything is computed.

``DIR/records/*.parquet``: ``record_id`` (int64 or string, unique), ``member_id`` (integer),
``category`` (string), ``created_at`` (timestamp, UTC), any payload columns; every file with the
same columns and types. ``DIR/members.parquet`` (optional for a build, which reads member facts
from the ledger): ``member_id, country, birth_date, believed_minor``.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.exceptions import InputError

MEMBER_COLUMNS = ("member_id", "country", "birth_date", "believed_minor")
REQUIRED = ("record_id", "member_id", "category", "created_at")


@dataclass(frozen=True)
class InputFile:
    path: Path
    rows: int
    bytes: int
    fingerprint: str

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {
            "file": self.path.relative_to(root).as_posix(),
            "rows": self.rows,
            "bytes": self.bytes,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Dataset:
    root: Path
    records: list[InputFile]
    schema: pa.Schema
    members: InputFile | None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.records)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


def fingerprint(path: Path, metadata: pq.FileMetaData) -> str:
    """sha256 of the file's size and Parquet footer (schema, row groups, offsets, statistics).

    Hashing whole inputs would cost more than the build; the footer changes with any rewrite.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
        footer_len = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
        handle.seek(max(0, size - 8 - footer_len))
        footer = handle.read(footer_len + 8)
    digest = hashlib.sha256(f"{size}:{metadata.num_rows}:".encode())
    digest.update(footer)
    return digest.hexdigest()


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _expect(path: Path, schema: pa.Schema, column: str, ok: bool, expected: str) -> None:
    if not ok:
        raise InputError(f"{path}: column {column!r}: expected {expected}, got {schema.field(column).type}")


def _check_record_schema(path: Path, schema: pa.Schema) -> None:
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} (records need {', '.join(REQUIRED)})"
        )
    if len(set(schema.names)) != len(schema.names):
        raise InputError(f"{path}: duplicate column names")
    types = pa.types
    rid = schema.field("record_id").type
    _expect(path, schema, "record_id", types.is_integer(rid) or types.is_string(rid), "int64 or string")
    _expect(path, schema, "member_id", types.is_integer(schema.field("member_id").type), "an integer (int64)")
    cat = schema.field("category").type
    _expect(path, schema, "category", types.is_string(cat) or types.is_large_string(cat), "a string")
    created = schema.field("created_at").type
    _expect(
        path,
        schema,
        "created_at",
        types.is_timestamp(created) and created.tz in ("UTC", "+00:00", "Etc/UTC"),
        "a timestamp with time zone UTC",
    )


def _null_counts(path: Path, metadata: pq.FileMetaData, columns: tuple[str, ...]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    for column in columns:
        index = names.index(column)
        total: int | None = 0
        for rg in range(metadata.num_row_groups):
            stats = metadata.row_group(rg).column(index).statistics
            if stats is None or not stats.has_null_count:
                total = None
                break
            assert total is not None
            total += stats.null_count
        out[column] = total
    return out


def open_dataset(root: Path) -> Dataset:
    """Check the folder's files and schemas (not yet the values); raises InputError naming the file."""
    if not root.is_dir():
        raise InputError(f"--data: {root} is not a folder")
    files = sorted((root / "records").glob("*.parquet"))
    if not files:
        raise InputError(f"--data: no records in {root / 'records'} (expected records/*.parquet)")
    records: list[InputFile] = []
    first_schema: pa.Schema | None = None
    for path in files:
        parquet = _open(path)
        schema = parquet.schema_arrow
        _check_record_schema(path, schema)
        if first_schema is None:
            first_schema = schema
        elif not schema.remove_metadata().equals(first_schema.remove_metadata()):
            extra = sorted(set(schema.names) - set(first_schema.names))
            lacking = sorted(set(first_schema.names) - set(schema.names))
            detail = (
                f"extra column(s) {', '.join(extra)}"
                if extra
                else f"missing column(s) {', '.join(lacking)}"
                if lacking
                else "column types differ: "
                + ", ".join(
                    f"{n} is {schema.field(n).type}, not {first_schema.field(n).type}"
                    for n in schema.names
                    if schema.field(n).type != first_schema.field(n).type
                )
            )
            raise InputError(f"{path}: columns differ from {files[0].name}: {detail}")
        nulls = _null_counts(path, parquet.metadata, ("record_id", "member_id", "created_at"))
        for column, count in nulls.items():
            if count:
                raise InputError(f"{path}: column {column!r}: {count} row(s) without a value")
        records.append(
            InputFile(
                path, parquet.metadata.num_rows, path.stat().st_size, fingerprint(path, parquet.metadata)
            )
        )
    assert first_schema is not None
    return Dataset(root, records, first_schema, _members_file(root / "members.parquet"))


def _members_file(path: Path) -> InputFile | None:
    if not path.exists():
        return None
    parquet = _open(path)
    names = parquet.schema_arrow.names
    if sorted(names) != sorted(MEMBER_COLUMNS):
        missing = sorted(set(MEMBER_COLUMNS) - set(names))
        extra = sorted(set(names) - set(MEMBER_COLUMNS))
        problems = [
            f"missing {', '.join(missing)}" if missing else "",
            f"extra {', '.join(extra)}" if extra else "",
        ]
        raise InputError(
            f"{path}: expected columns {', '.join(MEMBER_COLUMNS)}; " + "; ".join(p for p in problems if p)
        )
    return InputFile(
        path, parquet.metadata.num_rows, path.stat().st_size, fingerprint(path, parquet.metadata)
    )


def damaged(path: Path | str, exc: BaseException) -> InputError:
    """The error for a file whose footer read but whose pages do not (the first line of the cause)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return InputError(f"{path}: a damaged Parquet file ({first}); nothing was published")


def _increasing_range(path: Path) -> tuple[int, int] | None:
    """(first, last) if the file's integer record ids strictly increase, else None."""
    try:
        return _increasing_range_of(path)
    except (OSError, pa.ArrowException) as exc:
        raise damaged(path, exc) from None


def _increasing_range_of(path: Path) -> tuple[int, int] | None:
    parquet = pq.ParquetFile(path)
    first: int | None = None
    last: int | None = None
    for group in range(parquet.num_row_groups):
        ids = parquet.read_row_group(group, columns=["record_id"]).column(0).to_numpy()
        if len(ids) == 0:
            continue
        if (last is not None and ids[0] <= last) or (len(ids) > 1 and not bool((np.diff(ids) > 0).all())):
            return None
        first = int(ids[0]) if first is None else first
        last = int(ids[-1])
    return (0, -1) if first is None or last is None else (first, last)


def _sorted_and_disjoint(dataset: Dataset) -> bool:
    """The common case, proved cheaply: ids increase within each file and files do not overlap."""
    if not pa.types.is_integer(dataset.schema.field("record_id").type):
        return False
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        ranges = list(pool.map(_increasing_range, [f.path for f in dataset.records]))
    spans = sorted(r for r in ranges if r is not None and r[0] <= r[1]) if None not in ranges else None
    return spans is not None and all(a[1] < b[0] for a, b in pairwise(spans))


def _check_nulls_without_statistics(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    """``open_dataset`` refuses nulls from the footer's null counts; a file written without
    statistics has none, so those columns are scanned (a null ``created_at`` would otherwise be
    counted as included but not written, a null ``record_id`` would escape the uniqueness check)."""
    required = ("record_id", "member_id", "created_at")
    for record_file in dataset.records:
        path = record_file.path
        counts = _null_counts(path, pq.ParquetFile(path).metadata, required)
        silent = [column for column, count in counts.items() if count is None]
        if not silent:
            continue
        found = con.execute(
            "SELECT "
            + ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in silent)
            + f" FROM read_parquet({str(path)!r})"
        ).fetchall()[0]
        for column, count in zip(silent, found, strict=True):
            if count:
                raise InputError(f"{path}: column {column!r}: {count} row(s) without a value")


def check_values(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    """Values no schema can check: no nulls where the statistics were silent, unique record ids."""
    try:
        _check_values(con, dataset)
    except duckdb.Error as exc:
        raise damaged(dataset.root / "records", exc) from None


def _check_values(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    _check_nulls_without_statistics(con, dataset)
    if _sorted_and_disjoint(dataset):
        return
    files = ", ".join(repr(str(f.path)) for f in dataset.records)
    duplicates = con.execute(
        f"SELECT record_id FROM read_parquet([{files}]) GROUP BY record_id HAVING count(*) > 1 LIMIT 1"
    ).fetchall()  # not fetchone(): DuckDB 2 keeps a fetchone() result open on the connection
    if not duplicates:
        return
    duplicate = duplicates[0]
    where = con.execute(
        f"SELECT DISTINCT filename FROM read_parquet([{files}], filename = true) WHERE record_id = $1"
        " ORDER BY filename",
        [duplicate[0]],
    ).fetchall()
    raise InputError(
        f"{', '.join(str(w[0]) for w in where)}: column 'record_id': duplicate value {duplicate[0]!r}"
        " (record ids must be unique across all record files)"
    )
