"""Bulk imports: members and setting histories from CSV or Parquet, atomic by default.

One bad row means nothing is imported, and the error names the file, the row (the header is row 1)
and the field. Rows are validated before anything is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa

from consentgate.exceptions import ImportRowError, InputError, TimestampError
from consentgate.ledger.commands import EARLIEST, fact_draft, member_drafts
from consentgate.ledger.events import FACT_KEYS, EventDraft, EventKind, Source
from consentgate.ledger.state import resolve_member
from consentgate.ledger.store import Ledger, ProgressFn
from consentgate.ledger.tables import check_columns, column_text, read_table
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import parse_date, parse_instant, to_micros

MEMBER_COLUMNS = ["member_id", "country", "birth_date", "believed_minor"]
SETTING_COLUMNS = ["member_id", "setting", "value", "effective_at"]
IMPORT_SOURCES = {s.value: s for s in Source}


@dataclass(frozen=True)
class ImportResult:
    rows: int
    appended: int
    already_present: int


def _row(index: int) -> int:
    return index + 2  # the header is row 1


def _int(file: str, index: int, field: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ImportRowError(file, _row(index), field, f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise ImportRowError(
            file, _row(index), field, f"expected a non-negative 64-bit integer, got {text!r}"
        )
    return value


def _bool(file: str, index: int, field: str, text: str, *, optional: bool) -> bool | None:
    value = text.strip().lower()
    if value == "" and optional:
        return None
    if value in ("true", "false"):
        return value == "true"
    expected = "true, false or empty" if optional else "true or false"
    raise ImportRowError(file, _row(index), field, f"expected {expected}, got {text!r}")


def _instant(file: str, index: int, field: str, text: str) -> datetime:
    try:
        return parse_instant(text, field=field, allow_date=False)
    except TimestampError:
        raise ImportRowError(
            file,
            _row(index),
            field,
            f"expected an ISO 8601 timestamp with offset (e.g. 2025-11-03T00:00:00Z), got {text!r}",
        ) from None


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
    """
    file = str(path)
    table = read_table(path)
    check_columns(path, table, MEMBER_COLUMNS, ["registered_at"])
    ids = column_text(table, "member_id")
    countries = column_text(table, "country")
    births = column_text(table, "birth_date")
    minors = column_text(table, "believed_minor")
    registered = column_text(table, "registered_at")
    parsed: list[tuple[int, str, date | None, bool | None, datetime]] = []
    seen: dict[int, int] = {}
    for i in range(table.num_rows):
        member_id = _int(file, i, "member_id", ids[i])
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
                file,
                _row(i),
                "country",
                f"expected an ISO 3166-1 alpha-2 code, got {countries[i]!r}",
            )
        birth = None
        if births[i].strip():
            try:
                birth = parse_date(births[i], field="birth_date")
            except TimestampError:
                raise ImportRowError(
                    file, _row(i), "birth_date", f"expected YYYY-MM-DD or empty, got {births[i]!r}"
                ) from None
        minor = _bool(file, i, "believed_minor", minors[i], optional=True)
        reg = _instant(file, i, "registered_at", registered[i]) if registered[i].strip() else EARLIEST
        parsed.append((member_id, country, birth, minor, reg))

    known = ledger.registered_members()
    change_at = changes_effective_at or ledger.clock()
    drafts: list[EventDraft] = []
    existing_ids = [p[0] for p in parsed if p[0] in known]
    current = _current_facts(ledger, existing_ids, change_at) if existing_ids else {}
    for member_id, country, birth, minor, reg in parsed:
        if member_id not in known:
            drafts.extend(
                member_drafts(
                    member_id=member_id,
                    country=country,
                    birth_date=birth,
                    believed_minor=minor,
                    registered_at=reg,
                    source=Source.import_,
                    actor=actor,
                )
            )
            continue
        wanted = {
            "country": country,
            "birth_date": "" if birth is None else birth.isoformat(),
            "believed_minor": "" if minor is None else str(minor).lower(),
        }
        for key in FACT_KEYS:
            if current.get(member_id, {}).get(key, "") != wanted[key]:
                drafts.append(
                    fact_draft(
                        member_id=member_id,
                        key=key,
                        value=wanted[key],
                        at=change_at,
                        source=Source.import_,
                        actor=actor,
                    )
                )
    appended, present = ledger.append_bulk(drafts, progress=progress)
    return ImportResult(rows=table.num_rows, appended=appended, already_present=present)


def _current_facts(ledger: Ledger, member_ids: list[int], at: datetime) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for member_id in member_ids:
        state = resolve_member(member_id, ledger.member_events(member_id), at=at, watermark=None)
        out[member_id] = {k: e.value for k, e in state.facts.items()}
    return out


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
    the same file again appends nothing; the same key with other content is refused.
    """
    file = str(path)
    table = read_table(path)
    check_columns(path, table, SETTING_COLUMNS, ["source", "idempotency_key"])
    ids = column_text(table, "member_id")
    settings = column_text(table, "setting")
    values = column_text(table, "value")
    times = column_text(table, "effective_at")
    sources = column_text(table, "source")
    keys = column_text(table, "idempotency_key")
    toggles = {k for k, s in taxonomy.settings.items() if s.kind == "toggle"}
    known = ledger.registered_members()
    seen_keys: dict[str, int] = {}
    drafts: list[EventDraft] = []
    for i in range(table.num_rows):
        member_id = _int(file, i, "member_id", ids[i])
        if member_id not in known:
            raise ImportRowError(
                file,
                _row(i),
                "member_id",
                f"member {member_id} is not in the ledger (import members first)",
            )
        setting = settings[i].strip()
        if setting not in toggles:
            hint = " (an action, not an on/off switch)" if setting in taxonomy.settings else ""
            raise ImportRowError(file, _row(i), "setting", f"unknown setting {settings[i]!r}{hint}")
        value = _bool(file, i, "value", values[i], optional=False)
        effective = to_micros(_instant(file, i, "effective_at", times[i]))
        source_text = sources[i].strip() or "import"
        source = IMPORT_SOURCES.get(source_text)
        if source is None:
            raise ImportRowError(
                file,
                _row(i),
                "source",
                f"expected one of {sorted(IMPORT_SOURCES)}, got {sources[i]!r}",
            )
        text_value = "true" if value else "false"
        key = keys[i].strip()
        if not key:
            digest = hashlib.sha256(
                f"{member_id}|{setting}|{text_value}|{effective}|{source_text}".encode()
            ).hexdigest()
            key = f"import:{digest[:40]}"
        if key in seen_keys:
            raise ImportRowError(
                file, _row(i), "idempotency_key", f"duplicate of row {seen_keys[key]} ({key!r})"
            )
        seen_keys[key] = _row(i)
        # History imports may carry older effective times: they are marked as imports, whatever
        # source the file claims, unless it says dpo or system.
        if source in (Source.member, Source.gpc):
            source = Source.import_
        drafts.append(
            EventDraft(
                member_id,
                EventKind.setting_changed,
                setting,
                text_value,
                effective,
                source,
                actor,
                key,
            )
        )
    appended, present = ledger.append_bulk(drafts, progress=progress)
    return ImportResult(rows=table.num_rows, appended=appended, already_present=present)


def ensure_rows(table: pa.Table, path: Path) -> None:
    if table.num_rows == 0:
        raise InputError(f"{path}: no data rows")
