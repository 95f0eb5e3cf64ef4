"""The examples in docs/training.md run as written, against a published snapshot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from consentgate.snapshots.registry import Registry
from tests.training.conftest import Published

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
PLACEHOLDER = "genai.training-20251201T000000Z-0123456789ab"


def examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert len(blocks) == 4, "docs/training.md: one example each for pyarrow, Hugging Face, PyTorch, Spark"
    assert PLACEHOLDER in blocks[0]
    return [str(b) for b in blocks]


# On a one-core machine the DataLoader warns that two workers are more than it suggests.
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_every_example_reads_the_verified_rows(
    published: Published, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CONSENTGATE_DB set and the snapshot's id in place, each example gets every record once."""
    monkeypatch.setenv("CONSENTGATE_DB", published.url)
    namespace: dict[str, Any] = {}
    for block in examples():
        exec(compile(block.replace(PLACEHOLDER, published.snapshot_id), str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    expected = published.table()
    assert namespace["table"].equals(expected.select(["record_id", "payload"]))
    assert namespace["in_memory"].num_rows == expected.num_rows
    assert namespace["first"] in expected.to_pylist()
    assert namespace["seen"] == expected.num_rows
    assert sum(r["count"] for r in namespace["per_category"]) == expected.num_rows
    jobs = [r.job for r in Registry(published.ledger).reads([published.snapshot_id])]
    assert jobs == ["assistant-finetune", "training", "training", "training", "training"]
