"""Streaming CSV reading that survives what real exports do (DOMAIN §7).

A BOM, notes before the header (the header row is *found*, never a fixed number of lines skipped),
CRLF, multi-line quoted fields, fully quoted headers, a header ending with a comma, duplicate column
names, single-line files without a header, rows holding only a date. Rows are streamed through
Python's ``csv`` module; only counts (and, when asked, the first few rows) are kept, so memory stays
bounded by the longest row, and a field longer than ``FIELD_LIMIT`` is refused.

Text is UTF-8 (with or without BOM); a file that is not valid UTF-8 is read again as ``cp1252``
(the usual Windows code page, undefined bytes replaced), and the scan says so.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, BinaryIO

from consentgate.exceptions import InputError

FIELD_LIMIT = 16 << 20
"""The longest field read (16 MiB); a longer one is refused with the file and row named."""
HEADER_WINDOW = 50
"""The header must be within the first 50 rows (a notes preamble is a few lines)."""
FALLBACK = "cp1252"

csv.field_size_limit(FIELD_LIMIT)

_DATE = re.compile(
    r"""^\s*(?:
      \d{4}[-/]\d{2}[-/]\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?:\s*UTC)?   # 2025-06-01 14:03:22 UTC
    | \d{1,2}\s+[A-Za-z]{3}\s+\d{4}                                       # 08 Feb 2026
    | \d{1,2}/\d{1,2}/\d{2,4}(?:,?\s+\d{1,2}:\d{2}(?:\s*[AP]M)?)?          # 1/29/26, 2:37 PM
    | [A-Za-z]{3}\s+\d{1,2},\s+\d{4}                                      # Mar 3, 1985
    | [A-Za-z]{3}\s+\d{4}                                                 # Jan 2020
    )\s*$""",
    re.VERBOSE,
)


def looks_like_date(text: str) -> bool:
    return bool(_DATE.match(text))


@dataclass
class CsvScan:
    """What one pass over a CSV file found."""

    header: list[str] | None
    """The columns as in the file (a trailing empty column from a header ending in a comma dropped);
    None for a file without a header (e.g. a single line "No conversations found")."""
    records: int = 0
    date_only_rows: int = 0
    """Rows holding only a date (in Connections: members who hid or closed their profile)."""
    filled: Counter[int] = field(default_factory=Counter)
    """Per column index: 1 when some record has a value there (the scan stops looking after the first)."""
    encoding: str = "utf-8"
    decoding_note: str | None = None
    bom: bool = False
    notes: list[str] = field(default_factory=list)
    """Rows before the header (a preamble such as Connections.csv's "Notes:")."""
    first_rows: list[list[str]] = field(default_factory=list)
    text_without_header: str | None = None
    """The single line of a headerless one-line file, e.g. "No conversations found"."""

    def columns_with_values(self) -> set[str]:
        """The columns (by name) that hold a value in some record."""
        return {name for index, name in enumerate(self.header or []) if self.filled.get(index, 0)}


HeaderTest = Callable[[list[str]], bool]


def _reader(stream: BinaryIO, encoding: str) -> Any:
    text = io.TextIOWrapper(
        io.BufferedReader(stream, buffer_size=1 << 20),  # type: ignore[type-var]
        encoding=encoding,
        errors="strict" if encoding == "utf-8-sig" else "replace",
        newline="",
    )
    return csv.reader(text, strict=False)


def _is_header_candidate(row: list[str]) -> bool:
    return sum(1 for value in row if value.strip()) >= 2


def scan_csv(
    opener: Callable[[], BinaryIO],
    label: str,
    *,
    is_header: HeaderTest | None = None,
    keep_rows: int = 0,
) -> CsvScan:
    """One streaming pass over a CSV file (two when it turns out not to be UTF-8).

    ``is_header`` recognises the header row (the catalogue's signature); without it, or when no row
    of the first ``HEADER_WINDOW`` passes it, the header is the first row with two or more values,
    else the first non-empty row of a file with more than one. ``keep_rows`` keeps that many records.
    """
    try:
        return _scan(opener, label, "utf-8-sig", is_header, keep_rows)
    except UnicodeDecodeError as exc:
        scan = _scan(opener, label, FALLBACK, is_header, keep_rows)
        scan.encoding = FALLBACK
        scan.decoding_note = (
            f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start:,} of a block);"
            f" read as {FALLBACK}"
        )
        return scan


def _scan(
    opener: Callable[[], BinaryIO], label: str, encoding: str, is_header: HeaderTest | None, keep_rows: int
) -> CsvScan:
    with opener() as stream:
        head = stream.read(3) if hasattr(stream, "read") else b""
        bom = head == codecs.BOM_UTF8
        reader = _reader(_Prefixed(head, stream), encoding)  # type: ignore[arg-type]
        try:
            return _scan_rows(reader, bom, encoding, is_header, keep_rows)
        except csv.Error as exc:
            message = str(exc)
            if "field larger than field limit" in message:
                message = f"a field longer than {FIELD_LIMIT >> 20} MiB"
            raise InputError(f"{label}: row {reader.line_num}: {message}; refused") from None


def _scan_rows(
    reader: Any, bom: bool, encoding: str, is_header: HeaderTest | None, keep_rows: int
) -> CsvScan:
    window: list[list[str]] = []
    header_at: int | None = None
    for row in reader:
        window.append(row)
        cleaned = [value.strip().lstrip("\ufeff") for value in row]
        if is_header is not None and is_header(cleaned):
            header_at = len(window) - 1
            break
        if len(window) >= HEADER_WINDOW:
            break
    if header_at is None:
        candidates = [i for i, r in enumerate(window) if _is_header_candidate(r)]
        non_empty = [i for i, r in enumerate(window) if any(v.strip() for v in r)]
        if candidates:
            header_at = candidates[0]
        elif len(non_empty) > 1:
            header_at = non_empty[0]
    scan = CsvScan(header=None, bom=bom, encoding="utf-8" if encoding == "utf-8-sig" else encoding)
    if header_at is None:
        lines = [",".join(r) for r in window if any(v.strip() for v in r)]
        scan.text_without_header = lines[0] if lines else None
        for _ in reader:  # a headerless file: nothing to count, but read it to its end
            pass
        return scan
    header = [value.strip().lstrip("\ufeff") for value in window[header_at]]
    while header and header[-1] == "":
        header.pop()  # a header ending with a comma
    scan.header = header
    scan.notes = [",".join(r) for r in window[:header_at] if any(v.strip() for v in r)]

    # The hot loop (a row of messages.csv per turn): locals only, C-level list methods, and each
    # column looked at until it first holds a value; once every column has, rows are only counted.
    # A column that never holds a value (SUBJECT in messages.csv) stays pending to the end, so the
    # pending columns are fetched with one itemgetter call (C) and looked at only when one is set.
    width = len(header)
    pending = set(range(width))
    filled = scan.filled
    first_rows = scan.first_rows
    records = 0
    date_only = 0
    get, last, single = _getter(pending)
    for rows in (iter(window[header_at + 1 :]), reader):
        for row in rows:
            values = len(row) - row.count("")
            if not values:
                continue  # a blank line
            records += 1
            if values == 1 and width > 1 and looks_like_date(next(v for v in row if v)):
                date_only += 1
            if pending and (len(row) <= last or (get(row) if single else any(get(row)))):
                for i in [i for i in pending if i < len(row) and row[i].strip()]:
                    filled[i] += 1
                    pending.discard(i)
                get, last, single = _getter(pending)
            if len(first_rows) < keep_rows:
                first_rows.append(row[:width])
    scan.records = records
    scan.date_only_rows = date_only
    return scan


def _getter(pending: set[int]) -> tuple[Any, int, bool]:
    """(an itemgetter of the pending columns, the largest of them, whether there is one only)."""
    if not pending:
        return None, -1, True
    indexes = sorted(pending)
    return itemgetter(*indexes), indexes[-1], len(indexes) == 1


class _Prefixed(io.RawIOBase):
    """``stream`` with ``prefix`` (the bytes already read to look for a BOM) put back in front."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self.prefix, self.stream = prefix, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
