"""``consentgate synth``: deterministic files, a realistic consent history, idempotent loading."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.exceptions import InputError
from consentgate.ledger.events import EventKind
from consentgate.ledger.state import ObjectionOutcome
from consentgate.ledger.store import Ledger
from consentgate.objections import list_objections
from consentgate.snapshots import synth
from consentgate.snapshots.synth import synthesize
from consentgate.timeutil import to_micros
from tests.conftest import FixedClock, at

CHANGE = to_micros(at("2025-11-03"))
MEMBERS, RECORDS = 400, 3_000


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several record files of several row groups, so both writer threads and chunking are exercised."""
    monkeypatch.setattr(synth, "FILE_ROWS", 1_000)
    monkeypatch.setattr(synth, "GROUP_ROWS", 300)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def _sqlite(path: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{path}", clock=FixedClock(), initialise=True)


def _events(ledger: Ledger) -> list[tuple[object, ...]]:
    return [
        (e.seq, e.member_id, e.kind, e.key, e.value, e.effective_at, e.hash) for e in ledger.iter_events()
    ]


def test_same_seed_same_bytes_and_events_other_seed_differs(tmp_path, taxonomy, small_files) -> None:
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        ledger = _sqlite(tmp_path / f"{name}.db")
        result = synthesize(
            tmp_path / name, taxonomy, members=MEMBERS, records=RECORDS, seed=seed, ledger=ledger
        )
        runs[name] = (_digests(tmp_path / name), _events(ledger), result)
        ledger.close()
    assert runs["a"][0] == runs["b"][0]
    assert len(runs["a"][0]) == 1 + 3  # members.parquet and three record files
    assert runs["a"][1] == runs["b"][1]  # the same events, hashes included (the clock is fixed)
    assert runs["a"][2] == runs["b"][2]
    assert runs["a"][2].files == 4 and runs["a"][2].bytes == sum(
        p.stat().st_size for p in (tmp_path / "a").rglob("*.parquet")
    )
    assert set(runs["a"][0].values()).isdisjoint(runs["c"][0].values())
    assert {e[1:6] for e in runs["a"][1]} != {e[1:6] for e in runs["c"][1]}
    assert not (tmp_path / "a" / ".synth-partial").exists()


def test_schemas_and_records(tmp_path, taxonomy, small_files) -> None:
    synthesize(tmp_path, taxonomy, members=MEMBERS, records=RECORDS, seed=1)
    members = pq.read_table(tmp_path / "members.parquet")
    assert members.schema == pa.schema(
        [
            ("member_id", pa.int64()),
            ("country", pa.string()),
            ("birth_date", pa.date32()),
            ("believed_minor", pa.bool_()),
        ]
    )
    records = pq.read_table(tmp_path / "records")
    assert records.schema.remove_metadata() == synth.RECORDS
    assert sorted(records["record_id"].to_pylist()) == list(range(1, RECORDS + 1))
    assert members["member_id"].to_pylist() == list(range(1, MEMBERS + 1))
    assert set(records["member_id"].to_pylist()) <= set(members["member_id"].to_pylist())
    # Every category, the never-used ones included; content weighs most.
    counts = Counter(records["category"].to_pylist())
    assert set(counts) == set(taxonomy.categories)
    assert counts.most_common(1)[0][0].startswith("content.")
    assert {len(p) for p in records["payload"].to_pylist()} == {32}
    files = sorted(p.name for p in (tmp_path / "records").iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.ParquetFile(tmp_path / "records" / files[0]).num_row_groups == 4  # 300+300+300+100


def test_regions_ages_and_minors(tmp_path, taxonomy) -> None:
    synthesize(tmp_path, taxonomy, members=2_000, records=0, seed=3)
    rows = pq.read_table(tmp_path / "members.parquet").to_pylist()
    regions = Counter(taxonomy.region_of(r["country"]) for r in rows)
    assert set(regions) == {"ROW", "EEA", "UK", "CH", "CA", "HK", "CN"}
    assert 0.45 < regions["ROW"] / len(rows) < 0.65 and 0.18 < regions["EEA"] / len(rows) < 0.32
    births = [r["birth_date"] for r in rows]
    assert 0.15 < births.count(None) / len(rows) < 0.35
    turning = [b for b in births if b and date(2007, 10, 1) <= b <= date(2007, 11, 4)]
    minors = [b for b in births if b and b > date(2007, 11, 4)]
    assert len(turning) >= 3 and len(minors) >= 0.01 * len(rows)
    presumed = [r for r in rows if r["believed_minor"]]
    assert presumed and all(r["birth_date"] is None for r in presumed)
    assert [r["believed_minor"] for r in rows].count(None) > 0.9 * len(rows)


def test_tiny_network_still_has_every_kind_of_member(tmp_path, taxonomy) -> None:
    synthesize(tmp_path, taxonomy, members=20, records=0, seed=5)
    rows = pq.read_table(tmp_path / "members.parquet").to_pylist()
    assert any(r["birth_date"] and date(2007, 10, 1) <= r["birth_date"] <= date(2007, 11, 4) for r in rows)
    assert any(r["believed_minor"] for r in rows)
    assert pq.read_table(tmp_path / "records").num_rows == 0  # one empty file, with the schema


def test_first_member_id_shifts_every_id(tmp_path, taxonomy) -> None:
    synthesize(tmp_path, taxonomy, members=30, records=300, first_member_id=200_001)
    ids = pq.read_table(tmp_path / "members.parquet")["member_id"].to_pylist()
    assert ids == list(range(200_001, 200_031))
    assert set(pq.read_table(tmp_path / "records")["member_id"].to_pylist()) <= set(ids)


@pytest.mark.parametrize("size", [0, 7])
def test_payload_bytes(tmp_path, taxonomy, size: int) -> None:
    synthesize(tmp_path, taxonomy, members=10, records=100, payload_bytes=size)
    payloads = pq.read_table(tmp_path / "records")["payload"].to_pylist()
    assert {len(p.encode()) for p in payloads} == {size}


def test_consent_history_in_the_ledger(ledger: Ledger, taxonomy, tmp_path) -> None:
    result = synthesize(tmp_path / "net", taxonomy, members=MEMBERS, records=100, seed=11, ledger=ledger)
    events = list(ledger.iter_events())
    assert result.events_appended == len(events) and result.objections >= 6
    registered = {e.member_id: e.effective_at for e in events if e.kind == EventKind.member_registered}
    assert len(registered) == MEMBERS
    members = pq.read_table(tmp_path / "net" / "members.parquet").to_pylist()
    facts = {(e.member_id, e.key): e.value for e in events if e.kind == EventKind.member_fact}
    for row in members:
        assert facts[(row["member_id"], "country")] == row["country"]
        birth = row["birth_date"]
        assert facts.get((row["member_id"], "birth_date")) == (birth.isoformat() if birth else None)
    records = pq.read_table(tmp_path / "net" / "records").to_pylist()
    assert all(to_micros(r["created_at"]) >= registered[r["member_id"]] for r in records)
    settings = [e for e in events if e.kind == EventKind.setting_changed]
    assert 1.0 < len(settings) / MEMBERS < 2.0
    assert all(e.effective_at > registered[e.member_id] and e.source == "import" for e in settings)
    genai_off = [e.effective_at for e in settings if e.key == "genai_improvement" and e.value == "false"]
    assert min(genai_off) < CHANGE <= max(genai_off)
    assert any(e.key == "genai_improvement" and e.value == "true" for e in settings)
    assert {"ads_affiliate_sharing", "ads_data_from_others", "ads_offsite"} <= {e.key for e in settings}
    assert any(e.actor == "synth:gpc" for e in settings)
    by_instant: dict[int, set[int]] = {}
    for e in settings:
        by_instant.setdefault(e.effective_at, set()).add(e.member_id)
    assert any(len(who) > 1 for who in by_instant.values())  # exact ties between members

    objections = list_objections(ledger)
    outcomes = Counter(o.outcome for o in objections if not o.automatic)
    assert outcomes[ObjectionOutcome.pending] and outcomes[ObjectionOutcome.upheld]
    assert outcomes[ObjectionOutcome.rejected]
    assert any(o.received_at < at("2025-11-03") for o in objections)
    assert any(o.received_at >= at("2025-11-03") for o in objections)
    assert any(o.automatic and o.purposes == ("ads.personalization",) for o in objections)
    assert any(o.extension is not None for o in objections)
    pending_across = [
        o
        for o in objections
        if o.received_at < at("2025-11-03")
        and (o.decision is None or o.decision.effective_at >= CHANGE)
        and not o.automatic
    ]
    assert pending_across

    head = ledger.head()
    again = synthesize(tmp_path / "again", taxonomy, members=MEMBERS, records=10, seed=11, ledger=ledger)
    assert ledger.head() == head
    assert again.events_appended == 0 and again.events_present > 0
    assert ledger.verify().ok


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        ({"members": 0}, "--members"),
        ({"records": -1}, "--records"),
        ({"payload_bytes": -1}, "--payload-bytes"),
    ],
)
def test_bad_arguments(tmp_path, taxonomy, arguments: dict[str, int], option: str) -> None:
    sizes = {"members": 10, "records": 10, "payload_bytes": 32, **arguments}
    with pytest.raises(InputError, match=f"^{option}: "):
        synthesize(
            tmp_path,
            taxonomy,
            members=sizes["members"],
            records=sizes["records"],
            payload_bytes=sizes["payload_bytes"],
        )
    assert not any(tmp_path.iterdir())


def test_an_existing_network_is_refused(tmp_path, taxonomy) -> None:
    (tmp_path / "records").mkdir()  # an empty records/ is fine
    synthesize(tmp_path, taxonomy, members=10, records=10)
    with pytest.raises(InputError, match=r"^--out: .*already holds"):
        synthesize(tmp_path, taxonomy, members=10, records=10)
    (tmp_path / "members.parquet").unlink()
    with pytest.raises(InputError, match=r"^--out: "):
        synthesize(tmp_path, taxonomy, members=10, records=10)


def _cg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "consentgate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**env, "COLUMNS": "200"},
        check=False,
    )


def test_cli_synth_on_a_fresh_sqlite_path(tmp_path) -> None:
    db = str(tmp_path / "new" / "ledger.db")
    (tmp_path / "new").mkdir()
    first = _cg("--db", db, "synth", "--members", "50", "--records", "500", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "50 members, 500 records in 2 files" in first.stdout
    assert " 0 already present" in first.stdout
    assert pq.read_table(tmp_path / "a" / "records").num_rows == 500
    second = _cg("--db", db, "synth", "--members", "50", "--records", "5", "--out", "b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "ledger: 0 events appended" in second.stdout

    bad = _cg("synth", "--members", "10", "--records", "-3", "--out", "c", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == ["error: --records: must be at least 0, got -3"]
    assert not (tmp_path / "consentgate.db").exists()  # refused before the default ledger is created
