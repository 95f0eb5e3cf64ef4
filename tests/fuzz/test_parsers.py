"""Fuzz targets, one per parser of outside input, bounded in time (Hypothesis): whatever the bytes,
each parser either returns or raises a ConsentgateError with a message; never anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.exceptions import ConsentgateError
from consentgate.inspect.csvread import scan_csv
from consentgate.ledger.tables import read_table
from consentgate.policy.loader import load_policy_file, parse_policy
from consentgate.timeutil import parse_instant

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

_INSTANT_PARTS = st.sampled_from(
    [
        "2025-11-03",
        "T",
        "00:00:00",
        "Z",
        "+01:00",
        "-23:59",
        "9999",
        "0001",
        "12-31",
        ".999999",
        " ",
        "z",
        "²",
        "\x00",
    ]
)


@BOUNDED
@given(st.one_of(st.text(max_size=40), st.lists(_INSTANT_PARTS, max_size=8).map("".join)))
def test_parse_instant(text: str) -> None:
    try:
        parsed = parse_instant(text, field="--at")
    except ConsentgateError as exc:
        assert str(exc).startswith("--at: ")
    else:
        assert parsed.tzinfo is not None and 1900 <= parsed.year < 2200


_YAML = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@BOUNDED
@given(
    st.one_of(
        st.text(max_size=300), _YAML.map(repr), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    )
)
def test_parse_policy(text: str) -> None:
    with pytest.raises(ConsentgateError):
        parse_policy(text, source="fuzz.yaml")


@BOUNDED
@given(st.binary(max_size=400))
def test_policy_file_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("policy") / "p.yaml"
    path.write_bytes(data)
    with pytest.raises(ConsentgateError):
        load_policy_file(path)


_CSV_PIECES = st.sampled_from(
    [
        "member_id",
        "country",
        "birth_date",
        "believed_minor",
        ",",
        "\n",
        "\r\n",
        '"',
        "1",
        "DE",
        "x" * 50,
        "\ufeff",
        "\x00",
        ";",
    ]
)


@BOUNDED
@given(st.one_of(st.lists(_CSV_PIECES, max_size=40).map("".join).map(str.encode), st.binary(max_size=300)))
def test_import_tables(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("table")
    for name in ("members.csv", "members.parquet"):
        path = folder / name
        path.write_bytes(data)
        with contextlib.suppress(ConsentgateError):
            read_table(path)


@BOUNDED
@given(st.one_of(st.lists(_CSV_PIECES, max_size=60).map("".join).map(str.encode), st.binary(max_size=300)))
def test_archive_csv_scan(data: bytes) -> None:
    import io

    try:
        scan = scan_csv(lambda: io.BytesIO(data), "fuzz.csv")
    except ConsentgateError:
        return
    assert scan.records >= 0 and scan.date_only_rows <= scan.records
