"""docs/inspect.md states the limits and exit codes the code enforces (docs checked by tests)."""

from __future__ import annotations

from pathlib import Path

from consentgate.cli.inspect_cmd import INCOMPLETE_EXIT
from consentgate.inspect import archive, csvread, serve
from consentgate.inspect.render import OUTPUT_FILES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "inspect.md").read_text("utf-8")


def test_the_documented_limits_are_the_enforced_ones() -> None:
    assert f"**{archive.MAX_RATIO}-fold**" in DOC
    assert f"**{archive.MAX_TOTAL_BYTES >> 30} GiB**" in DOC
    assert f"{archive.MAX_ENTRIES:,} entries" in DOC
    assert f"{csvread.FIELD_LIMIT >> 20} MiB" in DOC
    assert f"for {serve.KEEP_SECONDS // 60} minutes and at most the last {serve.KEPT} reports" in DOC


def test_the_documented_exit_codes_and_files() -> None:
    assert f"| {INCOMPLETE_EXIT} | the report is complete, but some files were read incompletely" in DOC
    for name in OUTPUT_FILES:
        assert f"`{name}`" in DOC
