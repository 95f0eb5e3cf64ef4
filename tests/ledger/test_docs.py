"""The chain check documented in docs/ledger.md works on a real export, and fails on a forged one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from consentgate.ledger.exports import export_events
from consentgate.ledger.store import Ledger
from tests.conftest import register, set_setting

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def _snippet() -> str:
    match = re.search(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert match, "docs/ledger.md lost its verification snippet"
    return match.group(1)


def test_the_documented_chain_check_verifies_an_export(ledger: Ledger, tmp_path: Path) -> None:
    """Anyone can recompute the chain from `ledger export` with the code in docs/ledger.md."""
    register(ledger, 1, "DE", birth_date="1990-01-01")
    set_setting(ledger, 1, "genai_improvement", False, "2025-11-10")
    export_events(ledger, tmp_path / "events.parquet", fmt="parquet")
    ok = subprocess.run([sys.executable, "-c", _snippet()], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    table = pq.read_table(tmp_path / "events.parquet")
    values = table["value"].to_pylist()
    values[-1] = "true"  # forge the opt-out into an opt-in
    pq.write_table(
        table.set_column(table.schema.get_field_index("value"), "value", [values]),
        tmp_path / "events.parquet",
    )
    forged = subprocess.run([sys.executable, "-c", _snippet()], cwd=tmp_path, capture_output=True, text=True)
    assert forged.returncode != 0 and f"seq {len(values)} changed" in forged.stderr
