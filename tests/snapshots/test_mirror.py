"""The ledger's Parquet event mirror: incremental, self-checking, merged, equal to the ledger."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.ledger.events import digest_sql, event_digest
from consentgate.ledger.mirror import MAX_SEGMENTS, MIRROR_COLUMNS, EventMirror
from consentgate.ledger.store import Ledger
from tests.conftest import FixedClock, register, set_setting

Row = tuple[object, ...]


def ledger_rows(ledger: Ledger, upto: int | None = None) -> list[Row]:
    return [tuple(getattr(e, c) for c in MIRROR_COLUMNS) for e in ledger.iter_events(watermark=upto)]


def mirror_rows(files: list[Path]) -> list[Row]:
    rows: list[Row] = []
    for path in files:
        table = pq.read_table(path)
        assert table.column_names == list(MIRROR_COLUMNS)
        rows.extend(tuple(r.values()) for r in table.to_pylist())
    return rows


def segment_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("segment-*.parquet"))


def populate(ledger: Ledger, members: range) -> None:
    for member in members:
        register(ledger, member, "DE" if member % 2 else "US", birth_date="1990-01-01")
        set_setting(ledger, member, "genai_improvement", member % 3 == 0, "2025-10-01T00:00:00Z")


def test_sync_is_incremental_and_equals_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    """A second sync after three new events adds one segment holding exactly those three."""
    populate(ledger, range(1, 6))
    mirror = EventMirror(ledger, tmp_path / "events")
    head, _ = ledger.head()
    first = mirror.sync(head)
    assert len(first) == 1
    assert mirror_rows(first) == ledger_rows(ledger)
    assert mirror.sync(head) == first  # nothing new: nothing written
    before = first[0].stat().st_mtime_ns

    set_setting(ledger, 1, "genai_improvement", False, "2025-11-10T00:00:00Z")
    set_setting(ledger, 2, "ads_connections", False, "2025-11-10T00:00:00Z")
    register(ledger, 99, "GB")  # registered + country: two events, three in all with one more below
    new_head, _ = ledger.head()
    assert new_head > head
    files = mirror.sync(new_head)
    assert len(files) == 2 and files[0] == first[0]
    assert first[0].stat().st_mtime_ns == before  # the old segment is reused, not rewritten
    added = mirror_rows(files[1:])
    assert [r[0] for r in added] == list(range(head + 1, new_head + 1))
    assert added == ledger_rows(ledger)[head:]
    assert mirror_rows(files) == ledger_rows(ledger)
    index = json.loads((tmp_path / "events" / "index.json").read_text())
    assert [(s["first"], s["last"]) for s in index["segments"]] == [(1, head), (head + 1, new_head)]
    assert segment_files(tmp_path / "events") == sorted(p.name for p in files)


def test_a_tampered_segment_is_not_trusted(ledger: Ledger, tmp_path: Path) -> None:
    """A segment whose bytes changed (even into valid Parquet with other values) triggers a rebuild."""
    populate(ledger, range(1, 6))
    folder = tmp_path / "events"
    mirror = EventMirror(ledger, folder)
    head, _ = ledger.head()
    [segment] = mirror.sync(head)

    table = pq.read_table(segment)
    values = table["value"].to_pylist()
    values = ["true" if v == "false" else v for v in values]  # everyone opted in: a quiet lie
    pq.write_table(
        table.set_column(table.schema.get_field_index("value"), "value", pa.array(values)), segment
    )
    assert mirror_rows([segment]) != ledger_rows(ledger)
    files = mirror.sync(head)
    assert mirror_rows(files) == ledger_rows(ledger)

    raw = bytearray(files[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    files[0].write_bytes(bytes(raw))
    set_setting(ledger, 1, "genai_improvement", True, "2025-12-01T00:00:00Z")
    head, _ = ledger.head()
    files = mirror.sync(head)
    assert len(files) == 1  # rebuilt from scratch, not appended to a broken segment
    assert mirror_rows(files) == ledger_rows(ledger)

    files[0].unlink()
    assert mirror_rows(mirror.sync(head)) == ledger_rows(ledger)


def test_an_index_from_another_ledger_leads_to_a_rebuild(tmp_path: Path) -> None:
    """Segments and index copied from another ledger (same seqs, other events) are not trusted."""
    ours = Ledger.open(f"sqlite:///{tmp_path / 'ours.db'}", clock=FixedClock(), initialise=True)
    theirs = Ledger.open(f"sqlite:///{tmp_path / 'theirs.db'}", clock=FixedClock(), initialise=True)
    try:
        populate(ours, range(1, 6))
        populate(theirs, range(101, 106))
        assert ours.head()[0] == theirs.head()[0]
        head, _ = ours.head()
        EventMirror(theirs, tmp_path / "theirs").sync(head)
        shutil.copytree(tmp_path / "theirs", tmp_path / "ours")
        files = EventMirror(ours, tmp_path / "ours").sync(head)
        assert mirror_rows(files) == ledger_rows(ours)
        assert {r[1] for r in mirror_rows(files)} == set(range(1, 6))
    finally:
        ours.close()
        theirs.close()


def test_more_than_max_segments_are_merged(ledger: Ledger, tmp_path: Path) -> None:
    folder = tmp_path / "events"
    mirror = EventMirror(ledger, folder)
    register(ledger, 1, "DE")
    counts: list[int] = []
    for step in range(MAX_SEGMENTS + 2):
        set_setting(ledger, 1, "genai_improvement", step % 2 == 0, f"2025-10-{step + 1:02d}T00:00:00Z")
        head, _ = ledger.head()
        files = mirror.sync(head)
        counts.append(len(files))
        assert mirror_rows(files) == ledger_rows(ledger)
        assert segment_files(folder) == sorted(p.name for p in files)  # merged-away files are removed
    assert counts[:MAX_SEGMENTS] == list(range(1, MAX_SEGMENTS + 1))
    assert counts[MAX_SEGMENTS:] == [1, 2]  # the 17th segment triggers the merge into one
    assert max(counts) == MAX_SEGMENTS


def test_a_watermark_below_the_mirror_returns_the_mirror_unchanged(ledger: Ledger, tmp_path: Path) -> None:
    """Readers filter by seq themselves; an older watermark never truncates or rewrites the mirror."""
    populate(ledger, range(1, 4))
    mirror = EventMirror(ledger, tmp_path / "events")
    head, _ = ledger.head()
    files = mirror.sync(head)
    assert mirror.sync(2) == files
    assert mirror_rows(files) == ledger_rows(ledger)
    assert ledger_rows(ledger, 2) == ledger_rows(ledger)[:2]


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=200)
@given(
    ints=st.tuples(
        st.integers(min_value=1, max_value=2**62),
        st.integers(min_value=-(2**62), max_value=2**62),
        st.integers(min_value=-(2**62), max_value=2**62),
        st.integers(min_value=-(2**62), max_value=2**62),
    ),
    strings=st.tuples(texts, texts, texts, texts, texts, texts, texts),
)
def test_the_bulk_digest_equals_the_event_digest(
    ints: tuple[int, int, int, int], strings: tuple[str, ...]
) -> None:
    """The mirror verifies events with a DuckDB expression; it must hash exactly as Python does
    (lengths in code points, pipes and colons inside values, any Unicode)."""
    seq, member_id, effective_at, recorded_at = ints
    kind, key, value, source, actor, idempotency_key, prev_hash = strings
    row: dict[str, object] = {
        "seq": seq,
        "member_id": member_id,
        "kind": kind,
        "key": key,
        "value": value,
        "effective_at": effective_at,
        "recorded_at": recorded_at,
        "source": source,
        "actor": actor,
        "idempotency_key": idempotency_key,
        "prev_hash": prev_hash,
    }
    con = duckdb.connect()
    try:
        con.register("e", pa.Table.from_pylist([row]))
        [(bulk,)] = con.execute(f"SELECT {digest_sql()} FROM e").fetchall()
    finally:
        con.close()
    assert bulk == event_digest(
        seq, member_id, kind, key, value, effective_at, recorded_at, source, actor, idempotency_key, prev_hash
    )


def test_writes_after_a_mirror_sync_stay_visible_to_other_processes(tmp_path: Path) -> None:
    """The ADBC reader carries its own SQLite; closing it used to drop this process's SQLite locks,
    so another process that closed the database last deleted the write-ahead log, and this process's
    next commit (an opt-out) went into the deleted log: lost to every other process."""
    db = tmp_path / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{db}", clock=FixedClock(), initialise=True)
    try:
        populate(ledger, range(1, 4))
        head, _ = ledger.head()
        for _ in range(2):  # a portal or a build syncs more than once
            EventMirror(ledger, tmp_path / "events").sync(ledger.head()[0])
        count = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"
        other = subprocess.run(
            [sys.executable, "-c", count, str(db), "SELECT max(seq) FROM events"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(other.stdout) == head  # another process opened and closed the database
        set_setting(ledger, 1, "genai_improvement", False, "2025-11-10T00:00:00Z")
        other = subprocess.run(
            [sys.executable, "-c", count, str(db), "SELECT max(seq) FROM events"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(other.stdout) == head + 1, "the write after the sync is not visible to other processes"
        assert db.with_name("ledger.db-wal").exists()
    finally:
        ledger.close()


def test_a_ledger_file_replaced_at_the_same_path_is_read_anew(tmp_path: Path) -> None:
    """The kept ADBC reader belongs to a file, not a name: a restored copy is not read stale."""
    db = tmp_path / "ledger.db"
    for generation, members in enumerate((range(1, 3), range(1, 6))):
        ledger = Ledger.open(f"sqlite:///{db}", clock=FixedClock(), initialise=True)
        try:
            populate(ledger, members)
            head, _ = ledger.head()
            files = EventMirror(ledger, tmp_path / f"events-{generation}").sync(head)
            assert mirror_rows(files) == ledger_rows(ledger)
        finally:
            ledger.close()
        for path in tmp_path.glob("ledger.db*"):
            path.unlink()
