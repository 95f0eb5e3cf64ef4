"""The generated CLI reference matches the code."""

from __future__ import annotations

from pathlib import Path

from consentgate.cli.reference import command_paths, render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_generated_from_the_current_help() -> None:
    """docs/cli.md equals --help of every command; regenerate with python -m consentgate.cli.reference."""
    assert DOC.read_text("utf-8") == render_reference(), (
        "docs/cli.md is stale: run `python -m consentgate.cli.reference > docs/cli.md`"
    )


def test_every_documented_command_of_the_issue_exists() -> None:
    """The commands other tools rely on (DESIGN §4–5) are all present."""
    paths = {" ".join(p) for p in command_paths()}
    for command in (
        "init",
        "explain",
        "demo",
        "members import",
        "ledger import",
        "ledger export",
        "member show",
        "objection file",
        "synth",
        "snapshot build",
        "snapshot list",
        "snapshot show",
        "snapshot verify",
        "model register",
        "lineage member",
        "lineage debt",
        "gate",
        "objection decide",
        "objection extend",
        "objection list",
        "audit verify",
        "policy list",
        "policy show",
        "policy validate",
        "policy diff",
        "taxonomy export",
        "token create",
        "serve",
        "account create",
        "account list",
        "token list",
        "token revoke",
    ):
        assert command in paths
