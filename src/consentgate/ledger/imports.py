"""Bulk imports: members and setting histories from CSV or Parquet, atomic by default.

One bad row means nothing is imported, and the error names the file, the row (the header is row 1)
and the field. Validation runs on whole columns with Arrow first; only when that finds a problem does
the row-by-row validator run, to name the first bad row and field exactly. Both accept the same
input, so the fast path never lets through what the careful one would refuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from consentgate.exceptions import IdempotencyConflict, ImportRowError, InputError, TimestampError
from consentgate.ledger.commands import EARLIEST, add_fact_event, add_member_events
from consentgate.ledger.events import FACT_KEYS, MAX_MEMBER_ID, EventBatch, EventKind, LedgerEvent, Source
from consentgate.ledger.state import resolve_member
from consentgate.ledger.store import Ledger, ProgressFn, check_client_key
from consentgate.ledger.tables import as_text, check_columns, column_text, file_rows, read_table
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import (
    BOUNDS_TEXT,
    MAX_MICROS,
    MIN_MICROS,
    from_micros,
    parse_date,
    parse_instant,
    to_micros,
)

MEMBER_COLUMNS = ["member_id", "country", "birth_date", "believed_minor"]
SETTING_COLUMNS = ["member_id", "setting", "value", "effective_at"]
IMPORT_SOURCES = {s.value: s for s in Source}
UTC_US = pa.timestamp("us", tz="UTC")
T = TypeVar("T")


@dataclass(frozen=True)
class ImportResult:
    rows: int
    appended: int
    already_present: int


@dataclass(frozen=True)
class _Member:
    member_id: int
    country: str
    birth_date: str  # ISO date or ""
    believed_minor: str  # "true", "false" or ""
    registered_at: int  # microseconds


@dataclass(frozen=True)
class _Setting:
    member_id: list[int]
    setting: list[str]
    value: list[str]
    effective_at: list[int]
    source: list[str]
    key: list[str]


# -- the careful path: one row at a time, exact errors ------------------------------------------


def _row(index: int) -> int:
    return index + 2  # the header is row 1


def _member_id(file: str, index: int, text: str) -> int:
    """A member id: a positive 64-bit integer (the API's rule; member ids start at 1)."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
        raise ImportRowError(file, _row(index), "member_id", f"expected a positive integer, got {text!r}")
    value = int(digits)
    if not 1 <= value <= MAX_MEMBER_ID:
        raise ImportRowError(
            file,
            _row(index),
            "member_id",
            f"expected a positive 64-bit integer (ids start at 1), got {text!r}",
        )
    return value


EARLIEST_BIRTH = date(1900, 1, 1)


def _birth_ok(birth: date, today: date) -> bool:
    return EARLIEST_BIRTH <= birth <= today


def _bool(file: str, index: int, field: str, text: str, *, optional: bool) -> str:
    value = text.strip().lower()
    if value in ("true", "false") or (value == "" and optional):
        return value
    expected = "true, false or empty" if optional else "true or false"
    raise ImportRowError(file, _row(index), field, f"expected {expected}, got {text!r}")


def _instant(file: str, index: int, field: str, text: str) -> int:
    try:
        return to_micros(parse_instant(text, field=field, allow_date=False))
    except TimestampError as exc:
        expected = (
            f"expected an instant {BOUNDS_TEXT}"
            if "out of range" in str(exc)
            else "expected an ISO 8601 timestamp with offset (e.g. 2025-11-03T00:00:00Z)"
        )
        raise ImportRowError(file, _row(index), field, f"{expected}, got {text!r}") from None


def _members_by_row(file: str, table: pa.Table, taxonomy: Taxonomy, today: date) -> list[_Member]:
    ids = column_text(table, "member_id")
    countries = column_text(table, "country")
    births = column_text(table, "birth_date")
    minors = column_text(table, "believed_minor")
    registered = column_text(table, "registered_at")
    out: list[_Member] = []
    seen: dict[int, int] = {}
    for i in range(table.num_rows):
        member_id = _member_id(file, i, ids[i])
        if member_id in seen:
            raise ImportRowError(
                file,
                _row(i),
                "member_id",
                f"member {member_id} appears again (first in row {seen[member_id]})",
            )
        seen[member_id] = _row(i)
        country = countries[i].strip().upper()
        if country not in taxonomy.assigned_countries:
            raise ImportRowError(
                file, _row(i), "country", f"expected an ISO 3166-1 alpha-2 code, got {countries[i]!r}"
            )
        birth = ""
        if births[i].strip():
            try:
                born = parse_date(births[i], field="birth_date")
            except TimestampError:
                raise ImportRowError(
                    file, _row(i), "birth_date", f"expected YYYY-MM-DD or empty, got {births[i]!r}"
                ) from None
            if not _birth_ok(born, today):
                raise ImportRowError(
                    file,
                    _row(i),
                    "birth_date",
                    f"expected a date from {EARLIEST_BIRTH} to today ({today}), got {births[i]!r}",
                )
            birth = born.isoformat()
        minor = _bool(file, i, "believed_minor", minors[i], optional=True)
        reg = (
            _instant(file, i, "registered_at", registered[i])
            if registered[i].strip()
            else to_micros(EARLIEST)
        )
        out.append(_Member(member_id, country, birth, minor, reg))
    return out


def _settings_by_row(file: str, table: pa.Table, taxonomy: Taxonomy, known: set[int]) -> _Setting:
    ids = column_text(table, "member_id")
    settings = column_text(table, "setting")
    values = column_text(table, "value")
    times = column_text(table, "effective_at")
    sources = column_text(table, "source")
    keys = column_text(table, "idempotency_key")
    toggles = {k for k, s in taxonomy.settings.items() if s.kind == "toggle"}
    out = _Setting([], [], [], [], [], [])
    seen: dict[str, int] = {}
    for i in range(table.num_rows):
        member_id = _member_id(file, i, ids[i])
        if member_id not in known:
            raise ImportRowError(
                file, _row(i), "member_id", f"member {member_id} is not in the ledger (import members first)"
            )
        setting = settings[i].strip()
        if setting not in toggles:
            hint = " (an action, not an on/off switch)" if setting in taxonomy.settings else ""
            raise ImportRowError(file, _row(i), "setting", f"unknown setting {settings[i]!r}{hint}")
        value = _bool(file, i, "value", values[i], optional=False)
        effective = _instant(file, i, "effective_at", times[i])
        source = sources[i].strip() or "import"
        if source not in IMPORT_SOURCES:
            raise ImportRowError(
                file, _row(i), "source", f"expected one of {sorted(IMPORT_SOURCES)}, got {sources[i]!r}"
            )
        key = keys[i].strip() or _derived_key(member_id, setting, value, effective, source)
        if keys[i].strip():
            try:
                check_client_key(key)
            except InputError as exc:
                raise ImportRowError(file, _row(i), "idempotency_key", str(exc).split(": ", 1)[1]) from None
        if key in seen:
            if not keys[i].strip():
                raise ImportRowError(
                    file,
                    _row(i),
                    "(row)",
                    f"repeats row {seen[key]} exactly (same member, setting, value, time)",
                )
            raise ImportRowError(file, _row(i), "idempotency_key", f"duplicate of row {seen[key]} ({key!r})")
        seen[key] = _row(i)
        out.member_id.append(member_id)
        out.setting.append(setting)
        out.value.append(value)
        out.effective_at.append(effective)
        out.source.append(source)
        out.key.append(key)
    return out


def _at_file_rows(path: Path, validate: Callable[[], T]) -> T:
    """Run a row-by-row validator; report its row as the row in the file (blank lines counted)."""
    try:
        return validate()
    except ImportRowError as exc:
        rows = file_rows(path)
        if rows is None or exc.row < 2 or exc.row - 2 >= len(rows):
            raise
        raise ImportRowError(exc.file, rows[exc.row - 2], exc.field, exc.message) from None


def _derived_key(member_id: int, setting: str, value: str, effective: int, source: str) -> str:
    digest = hashlib.sha256(f"{member_id}|{setting}|{value}|{effective}|{source}".encode()).hexdigest()
    return f"import:{digest[:40]}"


# -- the fast path: whole columns with Arrow; None means "look row by row" -----------------------


def _text(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return as_text(table[name]) if name in table.column_names else None


def _ints(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """int64 from an integer or text column; raises ArrowInvalid on anything else."""
    if pa.types.is_integer(column.type) or pa.types.is_string(column.type):
        return pc.cast(column, pa.int64())
    raise pa.ArrowInvalid(f"not an integer column: {column.type}")


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """UTC microseconds from an aware timestamp or ISO text column; naive timestamps are refused."""
    if pa.types.is_timestamp(column.type) and column.type.tz is None:
        raise pa.ArrowInvalid("naive timestamps")
    if pa.types.is_timestamp(column.type) or pa.types.is_string(column.type):
        micros = pc.cast(pc.cast(column, UTC_US), pa.int64())
        inside = pc.and_(pc.greater_equal(micros, MIN_MICROS), pc.less(micros, MAX_MICROS))
        if not _all(pc.fill_null(inside, True)):
            # Out of the documented bounds: the careful path refuses it with the row and field.
            raise pa.ArrowInvalid("instant out of range")
        return micros
    raise pa.ArrowInvalid(f"not a timestamp column: {column.type}")


def _all(mask: pa.ChunkedArray | pa.Array) -> bool:
    return bool(pc.all(mask, skip_nulls=False).as_py()) if len(mask) else True


def _settings_fast(table: pa.Table, taxonomy: Taxonomy, known: set[int]) -> _Setting | None:
    keys = _text(table, "idempotency_key")
    if keys is not None and not _all(pc.equal(pc.utf8_length(keys), 0)):
        return None  # explicit keys: checked row by row
    try:
        ids = _ints(table["member_id"])
        effective = _micros(table["effective_at"])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    settings = as_text(table["setting"])
    values = as_text(table["value"])
    toggles = pa.array(sorted(k for k, s in taxonomy.settings.items() if s.kind == "toggle"))
    sources = _text(table, "source")
    source_list = ["import"] * table.num_rows
    if sources is not None:
        if not _all(pc.is_in(sources, value_set=pa.array(["", *IMPORT_SOURCES]))):
            return None
        source_list = [s or "import" for s in sources.to_pylist()]
    if not (
        _all(pc.greater_equal(ids, 1))
        and _all(pc.is_in(ids, value_set=pa.array(sorted(known), pa.int64())))
        and _all(pc.is_in(settings, value_set=toggles))
        and _all(pc.is_in(values, value_set=pa.array(["true", "false"])))
    ):
        return None
    out = _Setting(
        ids.to_pylist(),
        settings.to_pylist(),
        values.to_pylist(),
        effective.to_pylist(),
        source_list,
        [],
    )
    out.key.extend(
        _derived_key(*row)
        for row in zip(out.member_id, out.setting, out.value, out.effective_at, out.source, strict=True)
    )
    if len(set(out.key)) != len(out.key):
        return None
    return out


def _members_fast(table: pa.Table, taxonomy: Taxonomy, today: date) -> list[_Member] | None:
    try:
        ids = _ints(table["member_id"])
        births = table["birth_date"]
        births = (
            births if pa.types.is_date32(births.type) else pc.cast(_nullable(as_text(births)), pa.date32())
        )
        reg = (
            _micros(_nullable(table["registered_at"]))
            if "registered_at" in table.column_names
            else pa.nulls(table.num_rows, pa.int64())
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    countries = pc.utf8_upper(pc.utf8_trim_whitespace(as_text(table["country"])))
    minors = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(as_text(table["believed_minor"]), "")))
    born = pc.fill_null(
        pc.and_(
            pc.greater_equal(births, pa.scalar(EARLIEST_BIRTH, pa.date32())),
            pc.less_equal(births, pa.scalar(today, pa.date32())),
        ),
        True,
    )
    if not (
        _all(pc.greater_equal(ids, 1))
        and _all(born)
        and pc.count_distinct(ids).as_py() == table.num_rows
        and _all(pc.is_in(countries, value_set=pa.array(sorted(taxonomy.assigned_countries))))
        and _all(pc.is_in(minors, value_set=pa.array(["", "true", "false"])))
    ):
        return None
    earliest = to_micros(EARLIEST)
    birth_text = pc.fill_null(pc.cast(births, pa.string()), "")
    return [
        _Member(m, c, b, n, earliest if r is None else r)
        for m, c, b, n, r in zip(
            ids.to_pylist(),
            countries.to_pylist(),
            birth_text.to_pylist(),
            minors.to_pylist(),
            reg.to_pylist(),
            strict=True,
        )
    ]


def _nullable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Empty text becomes null, so optional columns cast cleanly; typed columns pass through."""
    if not pa.types.is_string(column.type):
        return column
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


# -- the imports ------------------------------------------------------------------------------


def import_members(
    ledger: Ledger,
    taxonomy: Taxonomy,
    path: Path,
    *,
    changes_effective_at: datetime | None = None,
    actor: str = "import",
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Import ``member_id,country,birth_date,believed_minor[,registered_at]``.

    New members are registered with their facts at ``registered_at`` (default: the start of the
    ledger's time). For members already in the ledger only changed facts are recorded, effective at
    ``changes_effective_at`` (default: now): a move is never back-dated to the registration.
    Idempotency keys come from the content, so importing the same file twice appends nothing.
    """
    file = str(path)
    table = read_table(path)
    check_columns(path, table, MEMBER_COLUMNS, ["registered_at"])
    today = ledger.clock().date()
    members = _members_fast(table, taxonomy, today) or _at_file_rows(
        path, lambda: _members_by_row(file, table, taxonomy, today)
    )

    known = ledger.registered_members()
    change_at = to_micros(changes_effective_at or ledger.clock())
    existing = [m.member_id for m in members if m.member_id in known]
    current = _current_facts(ledger, existing, change_at) if existing else {}
    source = str(Source.import_)
    batch = EventBatch.empty()
    unchanged = 0
    for m in members:
        if m.member_id not in known:
            add_member_events(
                batch,
                member_id=m.member_id,
                country=m.country,
                birth_date=m.birth_date,
                believed_minor=m.believed_minor,
                at=m.registered_at,
                source=source,
                actor=actor,
            )
            continue
        wanted = {"country": m.country, "birth_date": m.birth_date, "believed_minor": m.believed_minor}
        changed = False
        for key in FACT_KEYS:
            # An empty cell says nothing: it never erases a known fact (a minor signal above all).
            if wanted[key] and current.get(m.member_id, {}).get(key, "") != wanted[key]:
                changed = True
                add_fact_event(
                    batch,
                    member_id=m.member_id,
                    key=key,
                    value=wanted[key],
                    at=change_at,
                    source=source,
                    actor=actor,
                )
        unchanged += not changed
    appended, present = ledger.append_bulk(batch, progress=progress)
    # For members, "already present" counts rows: members the ledger knows with the same facts.
    return ImportResult(rows=table.num_rows, appended=appended, already_present=unchanged + present)


def _current_facts(ledger: Ledger, member_ids: list[int], at: int) -> dict[int, dict[str, str]]:
    """Each known member's facts as of ``at``, read in chunks (a re-import may name millions)."""
    by_member: dict[int, list[LedgerEvent]] = {m: [] for m in member_ids}
    for event in ledger.events_of_members(member_ids, kind=EventKind.member_fact, at=at):
        by_member[event.member_id].append(event)
    when = from_micros(at)
    return {
        member_id: {
            k: e.value for k, e in resolve_member(member_id, events, at=when, watermark=None).facts.items()
        }
        for member_id, events in by_member.items()
    }


def import_settings(
    ledger: Ledger,
    taxonomy: Taxonomy,
    path: Path,
    *,
    actor: str = "import",
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Import ``member_id,setting,value,effective_at[,source][,idempotency_key]``.

    Without an ``idempotency_key`` column each row's key is derived from its content, so importing
    the same file again appends nothing; the same key with other content is refused. History
    imports may carry older effective times, so rows claiming source member or gpc are recorded as
    imports (only a member's own live action is a member event, and those are never back-dated).
    """
    file = str(path)
    table = read_table(path)
    check_columns(path, table, SETTING_COLUMNS, ["source", "idempotency_key"])
    known = ledger.registered_members()
    rows = _settings_fast(table, taxonomy, known) or _at_file_rows(
        path, lambda: _settings_by_row(file, table, taxonomy, known)
    )
    recorded_as = {"member": "import", "gpc": "import"}
    batch = EventBatch(
        member_id=rows.member_id,
        kind=[str(EventKind.setting_changed)] * len(rows.member_id),
        key=rows.setting,
        value=rows.value,
        effective_at=rows.effective_at,
        source=[recorded_as.get(s, s) for s in rows.source],
        actor=[actor] * len(rows.member_id),
        idempotency_key=rows.key,
    )
    try:
        appended, present = ledger.append_bulk(batch, progress=progress)
    except IdempotencyConflict as exc:
        if exc.index is None:
            raise
        rows_in_file = file_rows(path)
        row = rows_in_file[exc.index] if rows_in_file else _row(exc.index)
        raise ImportRowError(
            file, row, "idempotency_key", str(exc).replace("; nothing was imported", "")
        ) from None
    return ImportResult(rows=table.num_rows, appended=appended, already_present=present)
