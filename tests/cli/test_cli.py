"""The ``consentgate`` command line, run as a real subprocess against a SQLite file (and once PostgreSQL).

Read-only commands share one prepared ledger (module scope); commands that write get a copy of it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from fideslang.models import Taxonomy as FidesTaxonomy

from consentgate.ledger.database import head_revision
from consentgate.ledger.store import Ledger
from tests.helpers import cg, flat, ok, one_error_line

FIXTURES = Path(__file__).parent.parent / "policy" / "fixtures"
REFERENCE = re.compile(r"OBJ-[0-9A-F]{10}")
HEAD = head_revision()

MEMBERS_CSV = """member_id,country,birth_date,believed_minor,registered_at
1,DE,1990-05-17,,2016-03-01T00:00:00Z
2,US,,,
3,FR,,false,2019-01-01T00:00:00Z
4,US,2012-01-01,,
"""
SETTINGS_CSV = """member_id,setting,value,effective_at
3,genai_improvement,false,2025-11-10T08:00:00Z
2,ads_affiliate_sharing,false,2025-12-01T00:00:00Z
"""
MEMBER_EVENTS = 4 + 4 + 1 + 1 + 1  # registered + country each; birth dates of 1 and 4; 3's minor flag
SETTING_EVENTS = 2


@dataclass
class Prepared:
    folder: Path
    db: Path
    url: str
    init: subprocess.CompletedProcess[str]
    members: subprocess.CompletedProcess[str]
    settings: subprocess.CompletedProcess[str]
    members_csv: Path
    settings_csv: Path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """A SQLite ledger made by `init`, `members import` and `ledger import` (results kept for the tests)."""
    folder = tmp_path_factory.mktemp("cli")
    db = folder / "ledger.db"
    url = f"sqlite:///{db}"
    members_csv = folder / "members.csv"
    members_csv.write_text(MEMBERS_CSV, "utf-8")
    settings_csv = folder / "settings.csv"
    settings_csv.write_text(SETTINGS_CSV, "utf-8")
    init = cg(url, "init", cwd=folder)
    members = cg(url, "members", "import", str(members_csv), cwd=folder)
    settings = cg(url, "ledger", "import", str(settings_csv), cwd=folder)
    return Prepared(folder, db, url, init, members, settings, members_csv, settings_csv)


@pytest.fixture
def copy(prepared: Prepared, tmp_path: Path) -> str:
    """A private copy of the prepared ledger, for commands that append."""
    ok(prepared.init)
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{prepared.db}{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / f"ledger.db{suffix}")
    return f"sqlite:///{tmp_path / 'ledger.db'}"


# -- init and imports ---------------------------------------------------------------------------


def test_init_creates_the_ledger_and_is_idempotent(prepared: Prepared) -> None:
    """`init` reports the schema and 0 events; running it again on a filled ledger keeps the events."""
    assert f"ledger ready at {prepared.url} (schema {HEAD}, 0 events)" in flat(ok(prepared.init))
    ok(prepared.settings)
    again = ok(cg(prepared.url, "init", cwd=prepared.folder))
    assert f"(schema {HEAD}, {MEMBER_EVENTS + SETTING_EVENTS} events)" in flat(again)


def test_members_import_reports_rows_and_events(prepared: Prepared) -> None:
    """`members import FILE` prints the file, its rows, the events appended and the watermark."""
    assert (
        f"{prepared.members_csv}: 4 rows, {MEMBER_EVENTS} events appended, 0 already in the ledger; "
        f"watermark {MEMBER_EVENTS}"
    ) in flat(ok(prepared.members))


def test_ledger_import_reports_rows_and_is_idempotent(prepared: Prepared, copy: str) -> None:
    """`ledger import FILE` appends each row once; importing the same file again appends nothing."""
    total = MEMBER_EVENTS + SETTING_EVENTS
    assert (
        f"{prepared.settings_csv}: 2 rows, 2 events appended, 0 already in the ledger; watermark {total}"
    ) in flat(ok(prepared.settings))
    again = ok(cg(copy, "ledger", "import", str(prepared.settings_csv), cwd=prepared.folder))
    assert f"2 rows, 0 events appended, 2 already in the ledger; watermark {total}" in flat(again)


# -- decisions and members ----------------------------------------------------------------------


def _explain(prepared: Prepared, member: int, when: str) -> dict[str, object]:
    out = ok(
        cg(
            prepared.url,
            "explain",
            "--member",
            str(member),
            "--category",
            "profile.skills",
            "--purpose",
            "genai.training",
            "--at",
            when,
            "--json",
            cwd=prepared.folder,
        )
    )
    decision: dict[str, object] = json.loads(out)
    return decision


def test_explain_json_for_an_eea_member_before_the_change(prepared: Prepared) -> None:
    """On 2025-10-01 an EEA member's skills may not train gen-AI: linkedin-2024-09 excludes the region."""
    decision = _explain(prepared, 1, "2025-10-01")
    assert decision["allowed"] is False
    assert decision["policy"] == {"id": "linkedin-2024-09", "version": 1}
    reasons = decision["reasons"]
    assert isinstance(reasons, list) and reasons
    assert all(isinstance(r, dict) and isinstance(r["code"], str) for r in reasons)
    assert "region_excluded" in [r["code"] for r in reasons]


def test_explain_json_for_an_eea_member_after_the_change(prepared: Prepared) -> None:
    """On 2025-11-04 the same member is included by default under linkedin-2025-11 (legitimate interest)."""
    decision = _explain(prepared, 1, "2025-11-04")
    assert decision["allowed"] is True
    assert decision["policy"] == {"id": "linkedin-2025-11", "version": 2}
    assert decision["legal_basis"] == "legitimate_interest"
    reasons = decision["reasons"]
    assert isinstance(reasons, list) and reasons
    assert all(isinstance(r, dict) and "code" in r for r in reasons)
    assert "region_excluded" not in [r["code"] for r in reasons]


def test_member_show_json_gives_facts_settings_and_their_events(prepared: Prepared) -> None:
    """`member show M --at T --json` shows facts, policy, and each setting with value, source and seq."""
    out = ok(
        cg(prepared.url, "member", "show", "3", "--at", "2025-11-11T00:00:00Z", "--json", cwd=prepared.folder)
    )
    report = json.loads(out)
    assert (report["member_id"], report["known"], report["country"], report["region"]) == (
        3,
        True,
        "FR",
        "EEA",
    )
    assert report["believed_minor"] is False
    assert report["policy"] == {"id": "linkedin-2025-11", "version": 2}
    settings = {row["key"]: row for row in report["settings"]}
    genai = settings["genai_improvement"]
    assert (genai["value"], genai["source"], genai["since"]) == (False, "import", "2025-11-10T08:00:00Z")
    assert genai["seq"] == MEMBER_EVENTS + 1
    assert settings["ads_offsite"]["seq"] is None
    assert settings["ads_offsite"]["source"] == "default (EEA)"
    assert report["objections"] == []


# -- objections ---------------------------------------------------------------------------------


def _file(db: str, folder: Path, when: str, purposes: str = "genai.training") -> tuple[str, str]:
    out = flat(
        ok(cg(db, "objection", "file", "--member", "1", "--purposes", purposes, "--at", when, cwd=folder))
    )
    match = re.search(rf"({REFERENCE.pattern}): objection to .* answer due by (\S+)", out)
    assert match, out
    return match.group(1), match.group(2)


def test_objection_file_then_decide(prepared: Prepared, copy: str) -> None:
    """`objection file` prints a reference and a due date one month on; `decide --uphold` records it once."""
    reference, due = _file(copy, prepared.folder, "2025-11-05T00:00:00Z")
    assert due == "2025-12-05T00:00:00Z"
    decided = ok(
        cg(
            copy,
            "objection",
            "decide",
            reference,
            "--uphold",
            "--reason",
            "Grounds outweigh our interest.",
            "--at",
            "2025-11-20T00:00:00Z",
            cwd=prepared.folder,
        )
    )
    assert f"{reference}: upheld on 2025-11-20T00:00:00Z" in flat(decided)
    twice = cg(copy, "objection", "decide", reference, "--reject", "--reason", "x", cwd=prepared.folder)
    assert f"objection {reference} was already upheld" in one_error_line(twice)


def test_objection_extend_only_in_the_first_month_and_by_at_most_two(prepared: Prepared, copy: str) -> None:
    """`extend --months 3` and an extension after the first month are refused; `--months 2` in it works."""
    reference, _ = _file(copy, prepared.folder, "2025-11-05T00:00:00Z")
    extend = ("objection", "extend", reference, "--reason", "Complex case.")
    three = cg(copy, *extend, "--months", "3", "--at", "2025-11-10T00:00:00Z", cwd=prepared.folder)
    assert "--months: the deadline can be extended by 1 or 2 months, not 3" in one_error_line(three)
    late = cg(copy, *extend, "--months", "2", "--at", "2025-12-05T00:00:01Z", cwd=prepared.folder)
    assert "an extension must be announced within one month of receipt (by 2025-12-05T00:00:00Z)" in (
        one_error_line(late)
    )
    extended = ok(cg(copy, *extend, "--months", "2", "--at", "2025-12-05T00:00:00Z", cwd=prepared.folder))
    assert f"{reference}: now due by 2026-02-05T00:00:00Z" in flat(extended)


def test_objection_list_overdue_as_of_an_instant(prepared: Prepared, copy: str) -> None:
    """`objection list --overdue --at T` lists only undecided objections whose due date is before T."""
    early, _ = _file(copy, prepared.folder, "2025-11-05T00:00:00Z")
    later, _ = _file(copy, prepared.folder, "2025-11-20T00:00:00Z")
    out = ok(cg(copy, "objection", "list", "--overdue", "--at", "2025-12-10T00:00:00Z", cwd=prepared.folder))
    assert early in out
    assert later not in out
    assert "OVERDUE" in out
    assert "1 objection(s) as of 2025-12-10T00:00:00Z" in flat(out)


# -- audit, exports -----------------------------------------------------------------------------


def test_audit_verify_reports_an_intact_chain(prepared: Prepared) -> None:
    """`audit verify` on an untouched ledger says ok with the number of events checked."""
    total = MEMBER_EVENTS + SETTING_EVENTS
    out = ok(cg(prepared.url, "audit", "verify", cwd=prepared.folder))
    assert f"ok: {total} events, chain intact up to seq {total}" in flat(out)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ledger_export_writes_every_event_with_its_hashes(
    prepared: Prepared, tmp_path: Path, fmt: str
) -> None:
    """`ledger export --format F --out FILE` writes one row per event, chained by prev_hash/hash."""
    out_file = tmp_path / f"events.{fmt}"
    out = ok(
        cg(prepared.url, "ledger", "export", "--format", fmt, "--out", str(out_file), cwd=prepared.folder)
    )
    total = MEMBER_EVENTS + SETTING_EVENTS
    assert f"wrote {total} events to {out_file}" in flat(out)
    if fmt == "parquet":
        rows = pq.read_table(out_file).to_pylist()
    else:
        with out_file.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    assert [int(r["seq"]) for r in rows] == list(range(1, total + 1))
    assert rows[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(rows))
    assert {r["kind"] for r in rows} == {"member_registered", "member_fact", "setting_changed"}


def test_ledger_state_exports_the_as_of_state(prepared: Prepared, tmp_path: Path) -> None:
    """`ledger state --at T` writes each member's latest event per key as of T (later changes left out)."""
    out_file = tmp_path / "state.parquet"
    out = ok(
        cg(prepared.url, "ledger", "state", "--at", "2025-11-11", "--out", str(out_file), cwd=prepared.folder)
    )
    assert "as of 2025-11-11T00:00:00Z" in flat(out)
    rows = pq.read_table(out_file).to_pylist()
    settings = {(r["member_id"], r["key"]): r["value"] for r in rows if r["kind"] == "setting_changed"}
    assert settings == {(3, "genai_improvement"): "false"}  # member 2's change is 2025-12-01
    countries = {r["member_id"]: r["value"] for r in rows if r["key"] == "country"}
    assert countries == {1: "DE", 2: "US", 3: "FR", 4: "US"}


# -- policies and taxonomy ----------------------------------------------------------------------


def test_policy_list_names_both_builtin_policies(prepared: Prepared) -> None:
    """`policy list` shows each policy's full id, version and start, even on an 80-column output."""
    out = ok(cg(prepared.url, "policy", "list", cwd=prepared.folder))
    assert "linkedin-2024-09" in out
    assert "linkedin-2025-11" in out


def test_policy_show_prints_the_rules(prepared: Prepared) -> None:
    """`policy show ID` names the policy, its start and its purposes; --json is the full policy."""
    out = flat(ok(cg(prepared.url, "policy", "show", "linkedin-2025-11", cwd=prepared.folder)))
    assert "linkedin-2025-11@2" in out
    assert "in force from 2025-11-03T00:00:00Z" in out
    assert "genai.training" in out and "ads.affiliate_sharing" in out
    assert "never used: messages.private" in out


def test_policy_validate_accepts_a_valid_file(prepared: Prepared) -> None:
    """`policy validate FILE` says ok with the policy's ref and start."""
    path = FIXTURES / "passing_minimal.yaml"
    out = flat(ok(cg(prepared.url, "policy", "validate", str(path), cwd=prepared.folder)))
    assert f"{path}: ok (minimal@1, in force from 2026-01-01T00:00:00Z)" in out


def test_policy_diff_json_lists_the_rule_changes(prepared: Prepared) -> None:
    """`policy diff A B --json` gives the added regions and purposes between the built-ins."""
    out = ok(
        cg(
            prepared.url,
            "policy",
            "diff",
            "linkedin-2024-09",
            "linkedin-2025-11",
            "--json",
            cwd=prepared.folder,
        )
    )
    changes = {c["path"]: c for c in json.loads(out)}
    for region in ("EEA", "CH", "UK", "CA", "HK"):
        assert changes[f"purposes.genai.training.regions.{region}"]["before"] is None
    for purpose in ("genai.affiliate_training", "ads.affiliate_sharing", "ads.affiliate_data"):
        assert changes[f"purposes.{purpose}"]["before"] is None


def test_taxonomy_export_fideslang_validates(prepared: Prepared) -> None:
    """`taxonomy export --format fideslang` prints YAML that fideslang's Taxonomy model accepts."""
    out = ok(cg(prepared.url, "taxonomy", "export", "--format", "fideslang", cwd=prepared.folder))
    document = yaml.safe_load(out)
    fides = FidesTaxonomy.model_validate(document)
    assert fides.data_category and fides.data_use
    uses = {use.fides_key: use.parent_key for use in fides.data_use}
    assert uses["train_ai_system.genai_training"] == "train_ai_system"


def test_demo_runs_and_shows_the_decision_table(tmp_path: Path) -> None:
    """`demo --crowd 200` exits 0, prints the gen-AI decision grid with reasons per date, then builds
    two snapshots, compares them by region and registers a model whose objection debt names Sophie."""
    out = ok(cg(None, "demo", "--crowd", "200", cwd=tmp_path, TMPDIR=str(tmp_path)))
    assert "May the member's skills train content-generating AI?" in out
    assert "1001 Anna (DE)" in out
    assert "region_excluded" in out
    assert "setting_off" in out
    assert "audit: hash chain intact" in out
    # The snapshot tour (full size by default: 200k records, as the README's main command shows).
    assert re.search(
        r"snapshot genai\.training-20251001T000000Z-[0-9a-f]{12}: [\d,]+ of 200,065 records", out
    )
    assert re.search(
        r"snapshot genai\.training-20251104T000000Z-[0-9a-f]{12}: [\d,]+ of 200,065 records", out
    )
    eea = re.search(r"│ EEA\s+│ 0\s+│ ([\d,]+)\s+│ \+", out)
    assert eea and int(eea.group(1).replace(",", "")) > 0, "EEA members are included only from 2025-11-03"
    assert re.search(r"model genai-2025-11 trained on .*: objection debt of [\d,]+ members", flat(out))
    assert "e.g. 1003 Sophie: setting_off genai_improvement on 2025-11-10" in out
    # Going forward: the next training run on the stale snapshot is refused, its refresh is not.
    text = flat(out)
    refused = re.search(
        r"model genai-2026-01 on the same snapshot, trained 2026-01-15: REFUSED, ([\d,]+) members", text
    )
    removed = re.search(
        r"--as-of 2026-01-15: (genai\.training-20260115T000000Z-[0-9a-f]{12}) without ([\d,]+) members", text
    )
    assert refused and removed and refused.group(1) == removed.group(2) != "0"
    assert f"model genai-2026-01 registered on {removed.group(1)}" in text


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_init_import_and_explain_on_postgresql(ledger_url: str, tmp_path: Path) -> None:
    """The CLI works the same against PostgreSQL: init, members import, explain --json."""
    members = tmp_path / "members.csv"
    members.write_text(MEMBERS_CSV, "utf-8")
    assert f"(schema {HEAD}, 0 events)" in flat(ok(cg(ledger_url, "init", cwd=tmp_path)))
    assert f"{MEMBER_EVENTS} events appended" in flat(
        ok(cg(ledger_url, "members", "import", str(members), cwd=tmp_path))
    )
    out = ok(
        cg(
            ledger_url,
            "explain",
            "--member",
            "1",
            "--category",
            "profile.skills",
            "--purpose",
            "genai.training",
            "--at",
            "2025-10-01",
            "--json",
            cwd=tmp_path,
        )
    )
    decision = json.loads(out)
    assert decision["allowed"] is False
    assert decision["policy"] == {"id": "linkedin-2024-09", "version": 1}
    assert "region_excluded" in [r["code"] for r in decision["reasons"]]


# -- errors: exit 2, one line, no traceback -----------------------------------------------------


def test_error_uninitialised_database(tmp_path: Path) -> None:
    """A database without the schema is refused with the command that fixes it."""
    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x)").connection.close()
    line = one_error_line(cg(f"sqlite:///{path}", "member", "show", "1", cwd=tmp_path))
    assert "is not initialised: run `consentgate init" in line


def test_error_missing_database_file_is_not_created(tmp_path: Path) -> None:
    """A mistyped SQLite path is reported, and no empty file is left behind."""
    path = tmp_path / "typo.db"
    line = one_error_line(cg(f"sqlite:///{path}", "member", "show", "1", cwd=tmp_path))
    assert f"no ledger at {path}" in line
    assert not path.exists()


def test_error_bad_at_timestamp(prepared: Prepared) -> None:
    """An --at without a UTC offset is refused, naming the option and the expected form."""
    result = cg(
        prepared.url,
        "explain",
        "--member",
        "1",
        "--category",
        "profile.skills",
        "--purpose",
        "genai.training",
        "--at",
        "2025-11-04T10:00:00",
        cwd=prepared.folder,
    )
    line = one_error_line(result)
    assert "--at: '2025-11-04T10:00:00' has no UTC offset" in line


def test_error_unknown_member_in_member_show(prepared: Prepared) -> None:
    """`member show` of a member the ledger does not know is an error naming the member."""
    line = one_error_line(cg(prepared.url, "member", "show", "99", "--at", "2025-11-04", cwd=prepared.folder))
    assert line == "error: member 99 is not in the ledger as of 2025-11-04T00:00:00Z"


def test_error_bad_import_row(prepared: Prepared, copy: str, tmp_path: Path) -> None:
    """A bad import row names the file, the row and the field, and nothing is imported."""
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "member_id,setting,value,effective_at\n"
        "1,genai_improvement,false,2025-01-01T00:00:00Z\n"
        "1,genai_improvement,maybe,2025-02-01T00:00:00Z\n",
        "utf-8",
    )
    line = one_error_line(cg(copy, "ledger", "import", str(bad), cwd=tmp_path))
    assert line == (
        f"error: {bad}, row 3, field 'value': expected true or false, got 'maybe' (nothing was imported)"
    )
    ledger = Ledger.open(copy)
    try:
        assert ledger.watermark() == MEMBER_EVENTS + SETTING_EVENTS
    finally:
        ledger.close()


def test_error_invalid_policy_file(prepared: Prepared) -> None:
    """`policy validate` of a bad file exits 2: 'error: FILE: invalid policy' then one line per problem."""
    path = FIXTURES / "failing_unknown_region.yaml"
    result = cg(prepared.url, "policy", "validate", str(path), cwd=prepared.folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {path}: invalid policy"
    assert lines[1:] == [
        "  - purposes.genai.training.regions.EU: unknown region "
        "(expected one of ['CA', 'CH', 'CN', 'EEA', 'HK', 'ROW', 'UK'])"
    ]


def test_error_unknown_objection_reference(prepared: Prepared) -> None:
    """Deciding an objection reference that does not exist names the reference."""
    result = cg(
        prepared.url,
        "objection",
        "decide",
        "OBJ-0000000000",
        "--uphold",
        "--reason",
        "x",
        cwd=prepared.folder,
    )
    assert one_error_line(result) == "error: no objection with reference 'OBJ-0000000000'"
