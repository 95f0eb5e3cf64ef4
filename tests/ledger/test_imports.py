"""Bulk imports of members and setting histories (CSV and Parquet): atomic, idempotent, precise errors.

Every test runs on SQLite and on PostgreSQL (the ``ledger`` fixture).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.decisions import member_state
from consentgate.exceptions import ImportRowError
from consentgate.ledger.events import EventKind
from consentgate.ledger.imports import import_members, import_settings
from consentgate.ledger.store import Ledger
from consentgate.ledger.tables import column_text, read_table
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import to_micros
from tests.conftest import NOW, at

MEMBERS_HEADER = "member_id,country,birth_date,believed_minor"
SETTINGS_HEADER = "member_id,setting,value,effective_at"


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def _members_file(folder: Path, name: str = "members.csv") -> Path:
    return _write(
        folder,
        name,
        [
            MEMBERS_HEADER + ",registered_at",
            "1,DE,1990-05-17,,2016-03-01T09:00:00Z",
            "2,US,,false,2018-07-01T00:00:00+02:00",
            "3,gb,2010-01-01,true,",
        ],
    )


def _with_members(ledger: Ledger, taxonomy: Taxonomy, folder: Path) -> int:
    """Import members 1–3; returns the watermark after it."""
    import_members(ledger, taxonomy, _members_file(folder))
    return ledger.watermark()


# -- members ------------------------------------------------------------------------------------


def test_members_import_registers_members_with_their_facts(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Each row registers a member with country, birth date and minor flag, effective at registered_at."""
    result = import_members(ledger, taxonomy, _members_file(tmp_path))
    # 1: registered + country + birth_date; 2: registered + country + believed_minor; 3: all four
    assert (result.rows, result.appended, result.already_present) == (3, 10, 0)
    assert ledger.watermark() == 10
    assert ledger.registered_members() == {1, 2, 3}

    first = member_state(ledger, 1, at("2020-01-01"))
    assert first.known and first.country == "DE"
    assert first.birth_date == date(1990, 5, 17)
    assert first.believed_minor is None
    assert not member_state(ledger, 1, at("2016-03-01T08:59:59Z")).known

    second = member_state(ledger, 2, at("2020-01-01"))
    assert second.country == "US" and second.birth_date is None and second.believed_minor is False
    assert second.registered is not None
    assert second.registered.effective == at("2018-06-30T22:00:00Z")

    third = member_state(ledger, 3, at("1970-01-01"))  # no registered_at: known from the start
    assert third.known and third.country == "GB" and third.believed_minor is True


def test_settings_import_after_members_import_sets_state(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A settings history is read as of T: the latest change at or before T holds."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    path = _write(
        tmp_path,
        "settings.csv",
        [
            SETTINGS_HEADER + ",source",
            "1,genai_improvement,false,2024-10-01T00:00:00Z,member",
            "1,genai_improvement,true,2025-02-01T12:00:00+01:00,",
            "2,ads_affiliate_sharing,FALSE,2025-11-05T00:00:00Z,dpo",
        ],
    )
    result = import_settings(ledger, taxonomy, path)
    assert (result.rows, result.appended, result.already_present) == (3, 3, 0)
    assert ledger.watermark() == mark + 3

    assert member_state(ledger, 1, at("2024-09-30")).setting_value("genai_improvement") is None
    assert member_state(ledger, 1, at("2024-10-01")).setting_value("genai_improvement") is False
    assert member_state(ledger, 1, at("2025-02-01T10:59:59Z")).setting_value("genai_improvement") is False
    assert member_state(ledger, 1, at("2025-02-01T11:00:00Z")).setting_value("genai_improvement") is True
    event = member_state(ledger, 2, at("2026-01-01")).settings["ads_affiliate_sharing"]
    assert event.value == "false" and event.source == "dpo"
    # A history claimed to come from the member is recorded as an import (it may be back-dated).
    assert member_state(ledger, 1, at("2024-10-02")).settings["genai_improvement"].source == "import"


def test_reimporting_the_same_settings_file_appends_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Row keys derive from row content, so a second import of one file finds every row present."""
    _with_members(ledger, taxonomy, tmp_path)
    path = _write(
        tmp_path,
        "settings.csv",
        [
            SETTINGS_HEADER,
            "1,genai_improvement,false,2024-10-01T00:00:00Z",
            "2,genai_improvement,false,2024-10-01T00:00:00Z",
            "2,promotions,true,2024-10-01T00:00:00Z",
        ],
    )
    import_settings(ledger, taxonomy, path)
    mark = ledger.watermark()
    again = import_settings(ledger, taxonomy, path)
    assert (again.rows, again.appended, again.already_present) == (3, 0, 3)
    assert ledger.watermark() == mark


def test_reimporting_the_same_members_file_appends_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A second import of one members file appends no event and reports every row as already present."""
    path = _members_file(tmp_path)
    import_members(ledger, taxonomy, path)
    mark = ledger.watermark()
    again = import_members(ledger, taxonomy, path)
    assert ledger.watermark() == mark
    assert again.appended == 0
    assert again.already_present == again.rows == 3


def test_settings_import_with_some_rows_present_appends_only_the_new_ones(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A file that extends an earlier import appends only the rows the ledger does not have."""
    _with_members(ledger, taxonomy, tmp_path)
    first = ["1,genai_improvement,false,2024-10-01T00:00:00Z"]
    import_settings(ledger, taxonomy, _write(tmp_path, "a.csv", [SETTINGS_HEADER, *first]))
    mark = ledger.watermark()
    longer = [*first, "1,genai_improvement,true,2025-01-01T00:00:00Z"]
    result = import_settings(ledger, taxonomy, _write(tmp_path, "b.csv", [SETTINGS_HEADER, *longer]))
    assert (result.appended, result.already_present) == (1, 1)
    assert ledger.watermark() == mark + 1


def test_members_reimport_with_a_new_country_records_only_the_move(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A changed country becomes one member_fact event at changes_effective_at, not back-dated."""
    _with_members(ledger, taxonomy, tmp_path)
    mark = ledger.watermark()
    moved = _write(
        tmp_path,
        "moved.csv",
        [
            MEMBERS_HEADER + ",registered_at",
            "1,DE,1990-05-17,,2016-03-01T09:00:00Z",
            "2,DE,,false,2018-07-01T00:00:00+02:00",
            "3,GB,2010-01-01,true,",
        ],
    )
    result = import_members(ledger, taxonomy, moved, changes_effective_at=at("2025-06-01T00:00:00Z"))
    assert result.appended == 1
    assert ledger.watermark() == mark + 1
    [event] = [e for e in ledger.member_events(2) if e.seq > mark]
    assert (event.kind, event.key, event.value) == (EventKind.member_fact, "country", "DE")
    assert event.effective == at("2025-06-01T00:00:00Z")
    assert event.source == "import"
    assert member_state(ledger, 2, at("2025-05-31T23:59:59Z")).country == "US"
    assert member_state(ledger, 2, at("2025-06-01T00:00:00Z")).country == "DE"


def test_members_reimport_without_a_date_records_the_move_now(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Without changes_effective_at a changed fact takes effect at the ledger clock's now."""
    _with_members(ledger, taxonomy, tmp_path)
    mark = ledger.watermark()
    moved = _write(tmp_path, "moved.csv", [MEMBERS_HEADER, "1,FR,1990-05-17,"])
    import_members(ledger, taxonomy, moved)
    [event] = [e for e in ledger.member_events(1) if e.seq > mark]
    assert (event.key, event.value, event.effective) == ("country", "FR", NOW)
    assert member_state(ledger, 1, NOW - timedelta(microseconds=1)).country == "DE"


def test_members_reimport_with_empty_minor_cells_keeps_the_known_minor_signals(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Empty birth_date/believed_minor cells mean "not known to this file": they do not erase a minor."""
    _with_members(ledger, taxonomy, tmp_path)  # member 3: born 2010-01-01, believed minor
    path = _write(tmp_path, "no-ages.csv", [MEMBERS_HEADER, "3,GB,,"])
    import_members(ledger, taxonomy, path, changes_effective_at=at("2025-12-01T00:00:00Z"))
    state = member_state(ledger, 3, at("2026-01-01"))
    assert state.birth_date == date(2010, 1, 1)
    assert state.believed_minor is True


# -- Parquet ------------------------------------------------------------------------------------


def test_parquet_members_and_settings_with_typed_columns_import(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Parquet with int64 ids, bool values, dates and tz-aware timestamps imports like the CSV."""
    members = pa.table(
        {
            "member_id": pa.array([10, 11], pa.int64()),
            "country": pa.array(["CH", "CA"]),
            "birth_date": pa.array([date(2009, 4, 1), None], pa.date32()),
            "believed_minor": pa.array([None, True], pa.bool_()),
            "registered_at": pa.array(
                [
                    datetime(2019, 1, 1, tzinfo=UTC),
                    datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pq.write_table(members, tmp_path / "members.parquet")
    result = import_members(ledger, taxonomy, tmp_path / "members.parquet")
    assert (result.rows, result.appended) == (2, 6)
    ten = member_state(ledger, 10, at("2024-01-01"))
    assert (ten.country, ten.birth_date, ten.believed_minor) == ("CH", date(2009, 4, 1), None)
    eleven = member_state(ledger, 11, at("2024-01-01"))
    assert (eleven.country, eleven.birth_date, eleven.believed_minor) == ("CA", None, True)
    assert eleven.registered is not None and eleven.registered.effective == at("2020-01-01T00:00:00Z")

    settings = pa.table(
        {
            "member_id": pa.array([10, 11, 11], pa.int64()),
            "setting": pa.array(["genai_improvement", "genai_improvement", "ads_offsite"]),
            "value": pa.array([False, False, True], pa.bool_()),
            "effective_at": pa.array(
                [
                    datetime(2025, 11, 4, 8, 30, 15, 250000, tzinfo=UTC),
                    datetime(2025, 11, 4, 10, 0, tzinfo=timezone(timedelta(hours=2))),
                    datetime(2025, 12, 1, tzinfo=UTC),
                ],
                pa.timestamp("ms", tz="Europe/Zurich"),
            ),
        }
    )
    pq.write_table(settings, tmp_path / "settings.parquet")
    mark = ledger.watermark()
    result = import_settings(ledger, taxonomy, tmp_path / "settings.parquet")
    assert (result.rows, result.appended, result.already_present) == (3, 3, 0)
    assert ledger.watermark() == mark + 3
    off = member_state(ledger, 10, at("2026-01-01")).settings["genai_improvement"]
    assert (off.value, off.effective_at) == ("false", to_micros(at("2025-11-04T08:30:15.250Z")))
    eleven = member_state(ledger, 11, at("2026-01-01"))
    assert eleven.settings["genai_improvement"].effective == at("2025-11-04T08:00:00Z")
    assert eleven.setting_value("ads_offsite") is True
    again = import_settings(ledger, taxonomy, tmp_path / "settings.parquet")
    assert (again.appended, again.already_present) == (0, 3)


def test_parquet_timestamps_are_read_as_iso_8601_text(tmp_path: Path) -> None:
    """A tz-aware Parquet timestamp is turned into well-formed ISO 8601 UTC text (no stray %f)."""
    table = pa.table(
        {
            "effective_at": pa.array(
                [datetime(2025, 11, 4, 8, 30, 15, 250000, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)],
                pa.timestamp("us", tz="UTC"),
            )
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    texts = column_text(read_table(tmp_path / "t.parquet"), "effective_at")
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
    assert all(iso.fullmatch(text) for text in texts), texts


def test_parquet_naive_timestamps_are_refused(ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path) -> None:
    """A Parquet timestamp column without a time zone is not guessed into UTC: the row is refused."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    settings = pa.table(
        {
            "member_id": pa.array([1], pa.int64()),
            "setting": pa.array(["genai_improvement"]),
            "value": pa.array([False]),
            "effective_at": pa.array([datetime(2025, 11, 4)], pa.timestamp("us")),
        }
    )
    pq.write_table(settings, tmp_path / "naive.parquet")
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, tmp_path / "naive.parquet")
    assert (caught.value.row, caught.value.field) == (2, "effective_at")
    assert ledger.watermark() == mark


# -- malformed input: nothing is imported, the error names row and field ------------------------

MEMBER_ERRORS = [
    # (case, header, bad row (always row 3, after a good row 2), field, message fragment)
    ("non_integer_id", MEMBERS_HEADER, "M7,DE,,", "member_id", "expected a positive integer, got 'M7'"),
    ("negative_id", MEMBERS_HEADER, "-4,DE,,", "member_id", "expected a positive integer, got '-4'"),
    ("unknown_country", MEMBERS_HEADER, "7,XX,,", "country", "ISO 3166-1 alpha-2 code, got 'XX'"),
    ("bad_birth_date", MEMBERS_HEADER, "7,DE,1990-02-30,", "birth_date", "YYYY-MM-DD or empty"),
    ("bad_minor_flag", MEMBERS_HEADER, "7,DE,,yes", "believed_minor", "true, false or empty, got 'yes'"),
    ("duplicate_id", MEMBERS_HEADER, "5,DE,,", "member_id", "appears again (first in row 2)"),
    (
        "registered_without_offset",
        MEMBERS_HEADER + ",registered_at",
        "7,DE,,,2020-01-01T00:00:00",
        "registered_at",
        "ISO 8601 timestamp with offset",
    ),
    ("wrong_field_count", MEMBERS_HEADER, "7,DE,", "(row)", "expected 4 fields as in the header, found 3"),
]


@pytest.mark.parametrize(
    ("header", "bad", "field", "fragment"),
    [case[1:] for case in MEMBER_ERRORS],
    ids=[case[0] for case in MEMBER_ERRORS],
)
def test_a_bad_members_row_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, header: str, bad: str, field: str, fragment: str
) -> None:
    """A malformed members row raises ImportRowError naming file, row 3 and field; nothing is appended."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    good = "5,FR,,," if header.endswith("registered_at") else "5,FR,,"
    path = _write(tmp_path, "bad.csv", [header, good, bad])
    with pytest.raises(ImportRowError) as caught:
        import_members(ledger, taxonomy, path)
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), 3, field)
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{path}, row 3, field {field!r}: ")
    assert str(caught.value).endswith("(nothing was imported)")
    assert ledger.watermark() == mark
    assert 5 not in ledger.registered_members()


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("member_id,birth_date,believed_minor", "country"),
        ("member_id,country,birth_date,believed_minor,email", "email"),
    ],
    ids=["missing_column", "extra_column"],
)
def test_a_members_file_with_wrong_columns_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, header: str, column: str
) -> None:
    """A missing or unexpected column is reported at row 1 (the header), naming the column."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    width = header.count(",") + 1
    path = _write(tmp_path, "bad.csv", [header, ",".join(["5", "FR", "", "", ""][:width])])
    with pytest.raises(ImportRowError) as caught:
        import_members(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (1, column)
    assert "expected header member_id,country,birth_date,believed_minor,[registered_at]" in str(caught.value)
    assert ledger.watermark() == mark


SETTING_ERRORS = [
    # (case, header, bad row (always row 3, after a good row 2), field, message fragment)
    ("non_integer_id", SETTINGS_HEADER, "one,genai_improvement,false,2025-01-01T00:00:00Z", "member_id",
     "expected a positive integer, got 'one'"),
    ("unknown_member", SETTINGS_HEADER, "99,genai_improvement,false,2025-01-01T00:00:00Z", "member_id",
     "member 99 is not in the ledger"),
    ("unknown_setting", SETTINGS_HEADER, "1,genai_improvment,false,2025-01-01T00:00:00Z", "setting",
     "unknown setting 'genai_improvment'"),
    ("action_setting", SETTINGS_HEADER, "1,get_copy_of_data,true,2025-01-01T00:00:00Z", "setting",
     "an action, not an on/off switch"),
    ("value_yes", SETTINGS_HEADER, "1,genai_improvement,yes,2025-01-01T00:00:00Z", "value",
     "expected true or false, got 'yes'"),
    ("empty_value", SETTINGS_HEADER, "1,genai_improvement,,2025-01-01T00:00:00Z", "value",
     "expected true or false, got ''"),
    ("timestamp_without_offset", SETTINGS_HEADER, "1,genai_improvement,false,2025-01-01T00:00:00",
     "effective_at", "with offset (e.g. 2025-11-03T00:00:00Z), got '2025-01-01T00:00:00'"),
    ("bare_date", SETTINGS_HEADER, "1,genai_improvement,false,2025-01-01", "effective_at",
     "with offset (e.g. 2025-11-03T00:00:00Z), got '2025-01-01'"),
    ("non_iso_timestamp", SETTINGS_HEADER, "1,genai_improvement,false,03/11/2025 10:00 UTC", "effective_at",
     "got '03/11/2025 10:00 UTC'"),
    ("unknown_source", SETTINGS_HEADER + ",source", "1,genai_improvement,false,2025-01-01T00:00:00Z,web",
     "source", "got 'web'"),
    ("duplicate_idempotency_key", SETTINGS_HEADER + ",source,idempotency_key",
     "1,promotions,true,2025-03-01T00:00:00Z,,k-1", "idempotency_key", "duplicate of row 2 ('k-1')"),
    ("repeated_row", SETTINGS_HEADER, "2,genai_improvement,false,2025-01-01T00:00:00Z", "(row)",
     "repeats row 2 exactly"),
    ("wrong_field_count", SETTINGS_HEADER, "1,genai_improvement,false", "(row)",
     "expected 4 fields as in the header, found 3"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "bad", "field", "fragment"),
    [case[1:] for case in SETTING_ERRORS],
    ids=[case[0] for case in SETTING_ERRORS],
)
def test_a_bad_settings_row_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, header: str, bad: str, field: str, fragment: str
) -> None:
    """A malformed settings row raises ImportRowError naming file, row 3 and field; nothing is appended."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    extra = header.count(",") - SETTINGS_HEADER.count(",")
    good = "2,genai_improvement,false,2025-01-01T00:00:00Z" + {0: "", 1: ",", 2: ",,k-1"}[extra]
    path = _write(tmp_path, "bad.csv", [header, good, bad])
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), 3, field)
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{path}, row 3, field {field!r}: ")
    assert ledger.watermark() == mark
    assert member_state(ledger, 2, at("2026-01-01")).setting_value("genai_improvement") is None


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("member_id,setting,value", "effective_at"),
        ("member_id,setting,value,effective_at,comment", "comment"),
    ],
    ids=["missing_column", "extra_column"],
)
def test_a_settings_file_with_wrong_columns_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, header: str, column: str
) -> None:
    """A missing or unexpected column is reported at row 1 (the header), naming the column."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    width = header.count(",") + 1
    row = ["1", "genai_improvement", "false", "2025-01-01T00:00:00Z", "note"][:width]
    path = _write(tmp_path, "bad.csv", [header, ",".join(row)])
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (1, column)
    assert "expected header member_id,setting,value,effective_at,[source],[idempotency_key]" in str(
        caught.value
    )
    assert ledger.watermark() == mark


def test_a_short_row_after_a_blank_line_is_reported_at_its_own_row(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A blank line is not blamed for a later row's missing field: the short row itself is named."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    path = _write(
        tmp_path,
        "gap.csv",
        [SETTINGS_HEADER, "1,genai_improvement,false,2025-01-01T00:00:00Z", "", "1,genai_improvement,true"],
    )
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (4, "(row)")
    assert caught.value.message == "expected 4 fields as in the header, found 3"
    assert ledger.watermark() == mark


def test_row_numbers_are_file_rows_even_after_a_blank_line(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """The row named in an error is the row of the file (header = 1), blank lines counted."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    path = _write(
        tmp_path,
        "gap.csv",
        [
            SETTINGS_HEADER,
            "1,genai_improvement,false,2025-01-01T00:00:00Z",
            "",
            "1,genai_improvement,maybe,2025-02-01T00:00:00Z",
        ],
    )
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (4, "value")
    assert ledger.watermark() == mark


def test_an_idempotency_key_reused_with_other_content_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """A row whose key is in the ledger for another event is refused, naming its row; no row is kept."""
    _with_members(ledger, taxonomy, tmp_path)
    header = SETTINGS_HEADER + ",idempotency_key"
    import_settings(
        ledger,
        taxonomy,
        _write(tmp_path, "a.csv", [header, "1,genai_improvement,false,2025-01-01T00:00:00Z,k-1"]),
    )
    mark = ledger.watermark()
    path = _write(
        tmp_path,
        "b.csv",
        [
            header,
            "2,genai_improvement,false,2025-01-01T00:00:00Z,k-2",
            "1,genai_improvement,true,2025-01-01T00:00:00Z,k-1",
        ],
    )
    with pytest.raises(ImportRowError, match="'k-1' was used for another event") as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (3, "idempotency_key")
    assert ledger.watermark() == mark
    assert member_state(ledger, 2, at("2026-01-01")).setting_value("genai_improvement") is None
    assert member_state(ledger, 1, at("2026-01-01")).setting_value("genai_improvement") is False


def test_a_bad_row_at_the_end_of_a_large_file_imports_nothing(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """Row 5,001 of a 5,000-data-row file is bad: none of the 4,999 good rows before it is imported."""
    mark = _with_members(ledger, taxonomy, tmp_path)
    start = at("2024-01-01T00:00:00Z")
    good = [
        f"1,genai_improvement,{'true' if i % 2 else 'false'},"
        f"{(start + timedelta(minutes=i)).isoformat().replace('+00:00', 'Z')}"
        for i in range(4_999)
    ]
    path = _write(
        tmp_path, "big.csv", [SETTINGS_HEADER, *good, "1,genai_improvement,maybe,2025-01-01T00:00:00Z"]
    )
    with pytest.raises(ImportRowError) as caught:
        import_settings(ledger, taxonomy, path)
    assert (caught.value.row, caught.value.field) == (5_001, "value")
    assert ledger.watermark() == mark
    # Without the bad row, the same 4,999 rows import: they were held back, not broken.
    fixed = _write(tmp_path, "fixed.csv", [SETTINGS_HEADER, *good])
    result = import_settings(ledger, taxonomy, fixed)
    assert (result.rows, result.appended) == (4_999, 4_999)
    assert ledger.watermark() == mark + 4_999
