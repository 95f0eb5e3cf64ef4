"""The inspector end to end on the fixture archives: recognition, records, treatments, JSON, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine
from consentgate.inspect.inspector import inspect_archive
from tests.conftest import at
from tests.helpers import cg, one_error_line, refuse_network
from tests.inspect import archives

T = at("2025-11-04T00:00:00Z")


def files_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in result["files"]}


@pytest.mark.parametrize("fixture", ["complete", "basic", "two_part", "folder"])
def test_every_file_is_recognised_or_listed_and_counted(
    fixture: str, engine: DecisionEngine, tmp_path: Path
) -> None:
    paths: list[Path] = (
        archives.two_part_export(tmp_path)
        if fixture == "two_part"
        else [
            {
                "complete": archives.complete_export,
                "basic": archives.basic_export,
                "folder": archives.folder_export,
            }[fixture](tmp_path)
        ]
    )
    result = inspect_archive(paths, engine=engine, at=T, country="DE").to_dict()
    found = files_of(result)
    assert {p: f["kind"] for p, f in found.items()} == archives.EXPECTED[fixture]
    assert {p: f["records"] for p, f in found.items()} == archives.RECORDS[fixture]
    assert sorted(result["unrecognised"]["files"]) == sorted(
        p for p, k in archives.EXPECTED[fixture].items() if k is None
    )
    for path, columns in archives.UNRECOGNISED_COLUMNS[fixture].items():
        assert sorted(result["unrecognised"]["columns"].get(path, [])) == sorted(columns), path
    # The contract of DESIGN §8.
    assert set(result["member"]) >= {"country", "region", "birth_date", "minor"}
    assert result["member"]["region"] == "EEA" and result["at"] == "2025-11-04T00:00:00Z"
    assert set(result["policy"]) == {"id", "version"}
    for f in result["files"]:
        assert {"path", "kind", "records", "categories", "purposes"} <= set(f)
        assert "genai.training" in f["purposes"]
        treatments = {v["treatment"] for v in f["purposes"].values()}
        assert treatments <= {"used", "never_used", "not_used", "unrecognised"}
        if f["kind"] is None:
            assert treatments == {"unrecognised"}
        elif f["categories"]:
            assert "unrecognised" not in treatments, f["path"]


def genai(result: dict[str, Any]) -> dict[str, str]:
    """kind → treatment for genai.training (the first file of each kind)."""
    out: dict[str, str] = {}
    for f in result["files"]:
        if f["kind"] is not None:
            out.setdefault(f["kind"], f["purposes"]["genai.training"]["treatment"])
    return out


def test_the_traps_and_the_member_s_situation(engine: DecisionEngine, tmp_path: Path) -> None:
    basic = archives.basic_export(tmp_path)
    eea = inspect_archive([basic], engine=engine, at=T, country="DE").to_dict()
    treatment = genai(eea)
    assert treatment["messages"] == "never_used"  # private messages
    assert treatment["ai_guide_messages"] == "used"  # the same header, but gen-AI feature input
    assert treatment["saved_resume"] == "used"
    assert treatment["receipts"] == "never_used"
    assert treatment["profile"] == "used"
    assert treatment["ai_role_play_messages"] == "not_used"  # "No conversations found": no rows
    before = inspect_archive([basic], engine=engine, at=at("2025-11-02T00:00:00Z"), country="DE").to_dict()
    assert genai(before)["profile"] == "not_used"  # EEA data only from 3 November 2025
    off = tmp_path / "settings.csv"
    off.write_text("setting,value\ngenai_improvement,false\n")
    from consentgate.inspect.inspector import read_settings

    switched = inspect_archive(
        [basic], engine=engine, at=T, country="DE", settings=read_settings(off, engine)
    ).to_dict()
    profile = next(f for f in switched["files"] if f["kind"] == "profile")
    assert profile["purposes"]["genai.training"]["treatment"] == "not_used"
    assert "setting_off" in profile["purposes"]["genai.training"]["reasons"]
    china = inspect_archive([basic], engine=engine, at=T, country="CN").to_dict()
    assert genai(china)["profile"] == "not_used"


def test_nothing_leaves_the_machine(
    engine: DecisionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_network(monkeypatch)
    result = inspect_archive(
        [archives.complete_export(tmp_path)], engine=engine, at=T, country="FR"
    ).to_dict()
    assert result["files"]


def test_the_cli_prints_the_report_and_the_json(tmp_path: Path) -> None:
    basic = archives.basic_export(tmp_path)
    runner = CliRunner()
    printed = runner.invoke(app, ["inspect", str(basic), "--country", "DE", "--at", "2025-11-04"])
    assert printed.exit_code == 0, printed.output
    assert "genai.training" in printed.output and "not recognised" in printed.output
    as_json = runner.invoke(app, ["inspect", str(basic), "--country", "DE", "--at", "2025-11-04", "--json"])
    assert json.loads(as_json.output)["member"]["country"] == "DE"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    not_zip = tmp_path / "export.zip"
    not_zip.write_text("hello")
    line = one_error_line(cg(None, "inspect", str(not_zip), "--country", "DE", cwd=tmp_path))
    assert "not a ZIP file" in line
