"""Generators for corpus inputs that are too large, binary or repetitive to keep as files.

Each takes the path to write and the ``args`` of the case's ``input: {make: NAME, args: {...}}``.
Parquet columns are given as ``[name, type, values]`` so that a case can name a column twice;
types: int64, int32, string, bool, float64, date32, timestamp_us_utc, timestamp_ns, timestamp_us
(no zone), binary, list_string, struct.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.policy import loader

BUILTIN_POLICY = Path(loader.__file__).parent / "builtin" / "linkedin-2025-11.yaml"


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _array(kind: str, values: list[Any]) -> pa.Array:
    if kind == "timestamp_us_utc":
        return pa.array([_instant(v) for v in values], pa.timestamp("us", tz="UTC"))
    if kind == "timestamp_ns":
        return pa.array([_instant(v) for v in values], pa.timestamp("ns", tz="UTC"))
    if kind == "timestamp_us":
        return pa.array(
            [None if v is None else _instant(v).replace(tzinfo=None) for v in values],  # type: ignore[union-attr]
            pa.timestamp("us"),
        )
    if kind == "date32":
        return pa.array([None if v is None else date.fromisoformat(v) for v in values], pa.date32())
    if kind == "binary":
        return pa.array([None if v is None else v.encode("latin-1") for v in values], pa.binary())
    if kind == "list_string":
        return pa.array(values, pa.list_(pa.string()))
    if kind == "struct":
        return pa.array(values, pa.struct([("a", pa.string())]))
    types = {"int64": pa.int64(), "int32": pa.int32(), "string": pa.string(), "bool": pa.bool_()}
    types["float64"] = pa.float64()
    return pa.array(values, types[kind])


def _table(columns: list[list[Any]]) -> pa.Table:
    return pa.Table.from_arrays(
        [_array(kind, values) for _, kind, values in columns], names=[name for name, _, _ in columns]
    )


def parquet(path: Path, columns: list[list[Any]]) -> None:
    """A Parquet file of the given columns."""
    pq.write_table(_table(columns), path)


RECORDS: list[tuple[str, str, list[Any]]] = [
    ("record_id", "int64", [1, 2]),
    ("member_id", "int64", [1001, 1004]),
    ("category", "string", ["profile.skills", "content.posts"]),
    ("created_at", "timestamp_us_utc", ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"]),
    ("payload", "string", ["a", "b"]),
]


def dataset(
    path: Path,
    parts: list[list[list[Any]]] | None = None,
    replace: dict[str, list[Any]] | None = None,
    drop: list[str] | None = None,
    extra_files: dict[str, str] | None = None,
) -> None:
    """A network dataset folder: ``records/part-N.parquet`` from ``parts`` or from the valid records
    with columns replaced (``replace: {name: [type, values]}``) or dropped."""
    records = path / "records"
    records.mkdir(parents=True)
    if parts is None:
        columns = [
            [name, *(replace or {}).get(name, [kind, values])]
            for name, kind, values in RECORDS
            if name not in (drop or [])
        ]
        parts = [columns]
    for index, columns in enumerate(parts):
        pq.write_table(_table(columns), records / f"part-{index}.parquet")
    for name, content in (extra_files or {}).items():
        (records / name).write_bytes(content.encode("latin-1"))


def damaged_dataset(path: Path, how: str) -> None:
    """A dataset whose one Parquet file is damaged: ``truncate`` (cut in half), ``page_header`` (bytes
    of the first data page overwritten), ``footer`` (the footer length made absurd)."""
    dataset(path)
    part = path / "records" / "part-0.parquet"
    data = bytearray(part.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "page_header":
        data[4:40] = b"\xff" * 36
    elif how == "footer":
        data[-8:-4] = (2**31 - 1).to_bytes(4, "little")
    else:
        raise ValueError(how)
    part.write_bytes(bytes(data))


def latin1(path: Path, data: str) -> None:
    """Bytes given as text whose characters U+0000..U+00FF stand for the bytes 0x00..0xFF."""
    path.write_bytes(data.encode("latin-1"))


def big_field(path: Path, header: str, row: str, size: int) -> None:
    """A CSV whose row holds one field of ``size`` bytes where ``row`` says ``{big}``."""
    path.write_text(header + "\n" + row.replace("{big}", "x" * size) + "\n", "utf-8")


def many_rows(path: Path, header: str, row: str, count: int, last: str | None = None) -> None:
    """``count`` rows (``{n}`` is the row number from 1), then ``last``: a bad row at the end."""
    lines = [header, *(row.replace("{n}", str(n)) for n in range(1, count + 1))]
    if last is not None:
        lines.append(last)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def policy_with(path: Path, replace: list[list[str]]) -> None:
    """The built-in 2025 policy with each ``[old, new]`` text replaced (``old`` must occur)."""
    text = BUILTIN_POLICY.read_text("utf-8")
    for old, new in replace:
        if old not in text:
            raise ValueError(f"{old!r} is not in {BUILTIN_POLICY.name}")
        text = text.replace(old, new, 1)
    path.write_text(text, "utf-8")


def repeated(path: Path, head: str, unit: str, count: int, tail: str = "") -> None:
    """``head``, then ``unit`` ``count`` times, then ``tail``: deep nesting, padding, long lines."""
    path.write_bytes((head + unit * count + tail).encode("utf-8"))


def nested(path: Path, head: str, opening: str, closing: str, depth: int, tail: str = "") -> None:
    """``opening`` ``depth`` times, then ``closing`` as often: ``[[[…]]]`` and the like."""
    path.write_bytes((head + opening * depth + closing * depth + tail).encode("utf-8"))


def alias_bomb(path: Path, levels: int) -> None:
    """The YAML "billion laughs": each level refers ten times to the one before."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(levels):
        name, prior = chr(98 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prior] * 10)}]")
    path.write_text("\n".join(lines) + "\n", "utf-8")


def zip_of(path: Path, members: dict[str, str]) -> None:
    """A ZIP archive with the given members (name: text)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
