"""Import files of the wrong shape: one error naming the file, the row and the column; nothing imported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.exceptions import InputError
from consentgate.ledger.imports import import_members
from consentgate.ledger.store import Ledger
from consentgate.taxonomy import Taxonomy

HEADER = "member_id,country,birth_date,believed_minor\n"


def _csv(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "members.csv"
        path.write_text(text, "utf-8")
        return path

    return make


def _parquet(**columns: pa.Array) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "members.parquet"
        base = {
            "member_id": pa.array([1]),
            "country": pa.array(["DE"]),
            "birth_date": pa.array([""]),
            "believed_minor": pa.array([""]),
        }
        pq.write_table(pa.table({**base, **columns}), path)
        return path

    return make


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a 10 MB field": (_csv(HEADER + '1,DE,"' + "x" * (10 << 20) + '",\n'), "a row longer than 4 MiB"),
    "a 2 MB field": (
        _csv(HEADER + '1,"' + "D" * (2 << 20) + '",,\n'),
        "row 2, field 'country': a field longer than 1 MiB",
    ),
    "duplicate columns": (
        _csv("member_id,country,country,birth_date,believed_minor\n1,DE,DE,,\n"),
        "row 1, field 'country': the column appears twice",
    ),
    "a nested Parquet column": (
        _parquet(country=pa.array([["DE"]])),
        "field 'country': expected text, numbers, booleans or timestamps, found list",
    ),
    "a struct Parquet column": (_parquet(country=pa.array([{"a": 1}])), "found struct"),
    "a binary Parquet column": (_parquet(country=pa.array([b"DE"])), "found binary"),
    "a ragged row": (_csv(HEADER + "1,DE,,\n2,DE\n"), "row 3"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_shapes_are_refused_by_name(
    ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, case: str
) -> None:
    make, words = CASES[case]
    with pytest.raises(InputError) as refused:
        import_members(ledger, taxonomy, make(tmp_path))
    assert words in str(refused.value)
    assert ledger.head()[0] == 0
