"""Explicit UTC time: parsing, formatting and the integer microseconds the ledger stores.

There is no hidden "now" in a decision; callers pass instants. The ledger stores instants as integer
microseconds since the Unix epoch (UTC) so that SQLite and PostgreSQL sort, compare and hash them the
same way, and bulk imports do not pay for datetime conversion in the database driver.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from consentgate.exceptions import TimestampError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Every instant consentgate accepts lies in [EARLIEST, LATEST) UTC: CLI options, imports (fast and
careful), the API and policies. Outside it lie typing slips (year 10000, year 0) that Python's
datetime cannot even hold in UTC, and that would make an append-only ledger unreadable for good."""
MIN_MICROS = -2_208_988_800_000_000  # EARLIEST
MAX_MICROS = 7_258_118_400_000_000  # LATEST
BOUNDS_TEXT = "between 1900-01-01 and 2200-01-01 UTC"


def out_of_range(shown: str) -> str:
    """The one wording for an instant outside the bounds: ``'…' is out of range (expected …)``."""
    return f"{shown} is out of range (expected an instant {BOUNDS_TEXT})"


def check_bounds(value: datetime, *, field: str = "timestamp") -> datetime:
    """``value`` (aware, UTC) if it lies within the documented bounds, else a ``TimestampError``."""
    if not EARLIEST <= value < LATEST:
        raise TimestampError(f"{field}: {out_of_range(value.isoformat())}")
    return value


def parse_instant(text: str, *, field: str = "timestamp", allow_date: bool = True) -> datetime:
    """Parse ISO 8601 with an offset or ``Z`` into an aware UTC datetime.

    A bare date (``2025-11-04``) means the start of that day in UTC when ``allow_date`` is true;
    a date-time without offset is refused, because guessing a time zone would move consent.
    """
    raw = text.strip()
    if allow_date and _DATE_ONLY.match(raw):
        try:
            day = datetime.fromisoformat(raw).replace(tzinfo=UTC)
        except ValueError as exc:
            raise TimestampError(f"{field}: {text!r} is not a valid date ({exc})") from None
        if not EARLIEST <= day < LATEST:
            raise TimestampError(f"{field}: {text!r} is out of range (expected a date {BOUNDS_TEXT})")
        return day
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise TimestampError(
            f"{field}: {text!r} is not an ISO 8601 timestamp (expected e.g. 2025-11-03T00:00:00Z)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimestampError(
            f"{field}: {text!r} has no UTC offset (expected e.g. 2025-11-03T00:00:00Z or +01:00)"
        )
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:30:00-01:00 is in year 10000 in UTC
        raise TimestampError(f"{field}: {out_of_range(repr(text))}") from None
    if not EARLIEST <= utc < LATEST:
        raise TimestampError(f"{field}: {out_of_range(repr(text))}")
    return utc


def ensure_utc(value: datetime, *, field: str = "timestamp") -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimestampError(f"{field}: naive datetime {value.isoformat()} (an offset is required)")
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch for an aware datetime."""
    delta = ensure_utc(value) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch.

    Instants outside what ``datetime`` can hold (written by versions before the bounds, e.g. year
    10000) are read as the nearest representable instant, so that reading never fails on stored
    data; ``audit verify`` reports such events (``out_of_range``)."""
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return _FAR_FUTURE if micros > 0 else _FAR_PAST


_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_FAR_PAST = datetime.min.replace(tzinfo=UTC)


def in_bounds(micros: int) -> bool:
    """Whether stored microseconds lie within the documented bounds."""
    return MIN_MICROS <= micros < MAX_MICROS


def format_instant(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, seconds precision unless sub-second parts exist."""
    utc = ensure_utc(value)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def now_utc() -> datetime:
    """The current instant; only entry points (CLI, web) call this, never a decision."""
    return datetime.now(UTC)


def parse_date(text: str, *, field: str = "date") -> date:
    """Parse an ISO 8601 calendar date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TimestampError(f"{field}: {text!r} is not an ISO 8601 date (expected YYYY-MM-DD)") from None


def add_months(value: datetime, months: int) -> datetime:
    """The same day ``months`` later, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    month_index = value.month - 1 + months
    year = value.year + month_index // 12
    month = month_index % 12 + 1
    next_month_first = date(year + (month // 12), month % 12 + 1, 1)
    last_day = (next_month_first - timedelta(days=1)).day
    return value.replace(year=year, month=month, day=min(value.day, last_day))
