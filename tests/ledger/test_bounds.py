"""Values at the edges: instants within 1900–2200 UTC, birth dates not in the future, ids from 1,
idempotency keys printable and short; the same rule on SQLite and PostgreSQL, on the fast import path
and the careful one, in the CLI, the API and policies."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.exceptions import ImportRowError, InputError, TimestampError
from consentgate.ledger.events import EventDraft, EventKind, Source
from consentgate.ledger.imports import _members_by_row, _members_fast, import_members, import_settings
from consentgate.ledger.store import Ledger
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.timeutil import MAX_MICROS, MIN_MICROS, from_micros, parse_instant, to_micros
from tests.helpers import cg, one_error_line

OUT_OF_RANGE = [
    "9999-12-31T23:30:00-01:00",  # year 10000 in UTC
    "0001-01-01T00:30:00+01:00",  # year 0 in UTC
    "2200-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "2900-06-01",
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_one_parser_refuses_instants_out_of_bounds_with_a_clear_error(text: str) -> None:
    with pytest.raises(TimestampError, match=r"out of range .*between 1900-01-01 and 2200-01-01 UTC"):
        parse_instant(text, field="--at")


def test_the_bounds_are_inclusive_below_and_exclusive_above() -> None:
    assert to_micros(parse_instant("1900-01-01T00:00:00Z")) == MIN_MICROS
    assert to_micros(parse_instant("2199-12-31T23:59:59.999999Z")) == MAX_MICROS - 1


def test_stored_instants_beyond_datetime_are_read_not_crashed_on() -> None:
    """Ledgers written before the bounds may hold year 10000; reading must still work."""
    assert from_micros(253_402_300_800_000_000 + 1_800_000_000).year == 9999
    assert from_micros(-62_135_596_800_000_000 - 10).year == 1


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.mark.parametrize("text", OUT_OF_RANGE[:2])
def test_imports_refuse_out_of_range_instants_on_both_paths(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, text: str
) -> None:
    members = _write(
        tmp_path, "m.csv", ["member_id,country,birth_date,believed_minor,registered_at", f"1,DE,,,{text}"]
    )
    with pytest.raises(ImportRowError, match=r"row 2.*registered_at.*1900-01-01 and 2200-01-01"):
        import_members(ledger, taxonomy, members)
    assert ledger.head()[0] == 0
    import_members(
        ledger,
        taxonomy,
        _write(tmp_path, "ok.csv", ["member_id,country,birth_date,believed_minor", "1,DE,,"]),
    )
    head = ledger.head()
    # Settings without idempotency keys take the fast (Arrow) path first: it must not store year 10000.
    rows = [
        "member_id,setting,value,effective_at",
        "1,genai_improvement,false,2025-11-04T00:00:00Z",
        f"1,genai_improvement,true,{text}",
    ]
    with pytest.raises(ImportRowError, match=r"row 3.*effective_at"):
        import_settings(ledger, taxonomy, _write(tmp_path, "s.csv", rows))
    assert ledger.head() == head


def test_member_ids_start_at_1_and_birth_dates_are_not_in_the_future(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    header = "member_id,country,birth_date,believed_minor"
    with pytest.raises(ImportRowError, match=r"row 2.*member_id.*positive"):
        import_members(ledger, taxonomy, _write(tmp_path, "a.csv", [header, "0,DE,,"]))
    with pytest.raises(ImportRowError, match=r"row 3.*birth_date.*to today \(2026-11-23\).*2090-01-01"):
        import_members(
            ledger, taxonomy, _write(tmp_path, "b.csv", [header, "1,DE,1990-01-01,", "2,DE,2090-01-01,"])
        )
    with pytest.raises(ImportRowError, match=r"birth_date.*1850-01-01"):
        import_members(ledger, taxonomy, _write(tmp_path, "c.csv", [header, "1,DE,1850-01-01,"]))
    assert ledger.head()[0] == 0


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("a\x00b", "U+0000 at position 2"),
        ("k" * 5000, "1 to 256 characters, got 5,000"),
        ("tab\there", "U+0009"),
    ],
)
def test_idempotency_keys_are_printable_and_short_on_both_databases(
    ledger: Ledger, key: str, words: str
) -> None:
    draft = EventDraft(1, EventKind.member_registered, "registered", "true", None, Source.import_, "t", key)
    with pytest.raises(InputError, match=re.escape(words)):
        ledger.append([draft])
    assert ledger.head()[0] == 0


def test_an_import_s_idempotency_key_column_has_the_client_limit(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    import_members(
        ledger, taxonomy, _write(tmp_path, "m.csv", ["member_id,country,birth_date,believed_minor", "1,DE,,"])
    )
    rows = [
        "member_id,setting,value,effective_at,idempotency_key",
        f"1,genai_improvement,false,2025-11-04T00:00:00Z,{'x' * 201}",
    ]
    with pytest.raises(ImportRowError, match=r"row 2.*idempotency_key.*1 to 200 characters"):
        import_settings(ledger, taxonomy, _write(tmp_path, "s.csv", rows))


@pytest.mark.parametrize("text", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_cli_options_refuse_out_of_range_instants(tmp_path: Path, text: str) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    assert cg(db, "init", cwd=tmp_path).returncode == 0
    for command in (
        [
            "explain",
            "--member",
            "1",
            "--category",
            "profile.name",
            "--purpose",
            "genai.training",
            "--at",
            text,
        ],
        ["ledger", "state", "--at", text, "--out", str(tmp_path / "s.parquet")],
        ["objection", "list", "--at", text],
    ):
        line = one_error_line(cg(db, *command, cwd=tmp_path))
        assert "--at" in line and "out of range" in line, (command, line)


# -- the fast and the careful member import agree on every row -------------------------------

_IDS = st.sampled_from(
    ["1", "2", "0", "-1", "007", "١", "9223372036854775807", "9223372036854775808", "x", ""]
)
_COUNTRIES = st.sampled_from(["DE", "de", " US ", "XX", "", "GB"])
_BIRTHS = st.sampled_from(
    [
        "",
        "1990-05-17",
        "2090-01-01",
        "1899-12-31",
        "1900-01-01",
        "2026-11-23",
        "2026-11-24",
        "1990-02-30",
        "17.05.1990",
    ]
)
_MINORS = st.sampled_from(["", "true", "false", "TRUE", "yes"])
_REGISTERED = st.sampled_from(
    ["", "2016-03-01T09:00:00Z", "9999-12-31T23:30:00-01:00", "2016-03-01T09:00:00", "2016-03-01"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_IDS, _COUNTRIES, _BIRTHS, _MINORS, _REGISTERED), min_size=1, max_size=4))
def test_fast_and_careful_member_import_accept_and_refuse_the_same_rows(
    rows: list[tuple[str, str, str, str, str]],
) -> None:
    taxonomy = load_taxonomy()
    names = ["member_id", "country", "birth_date", "believed_minor", "registered_at"]
    table = pa.table({name: pa.array([r[i] for r in rows], pa.string()) for i, name in enumerate(names)})
    today = date(2026, 11, 23)
    fast = _members_fast(table, taxonomy, today)
    try:
        careful = _members_by_row("m.csv", table, taxonomy, today)
    except ImportRowError:
        careful = None
    if careful is None:
        assert not fast, f"the fast path accepted rows the careful path refuses: {rows}"
    elif fast:
        assert fast == careful


def test_an_old_ledger_holding_year_10000_still_reads_and_audit_verify_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ledgers written before the bounds may hold such instants: nothing may crash on them for good."""
    from consentgate.ledger import store as store_module
    from tests.conftest import FixedClock, register

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Ledger.open(url, clock=FixedClock(), initialise=True)
    register(old, 7, "DE", registered_at="2015-01-01T00:00:00Z")
    monkeypatch.setattr(store_module, "_check_append", lambda *_: None)  # as versions before the bounds did
    year_10000 = 253_402_300_800_000_000 + 1_800_000_000
    old.append(
        [
            EventDraft(
                7,
                EventKind.setting_changed,
                "genai_improvement",
                "false",
                year_10000,
                Source.import_,
                "t",
                "old:1",
            )
        ]
    )
    monkeypatch.undo()
    seq = old.head()[0]
    old.close()
    db = str(tmp_path / "old.db")
    verified = cg(db, "audit", "verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"warning: seq {seq}: effective_at is {year_10000} µs since the epoch, outside" in verified.stdout
    shown = cg(db, "member", "show", "7", cwd=tmp_path)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
