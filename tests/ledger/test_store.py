"""The ledger store: append-only, idempotent, hash-chained, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from consentgate.exceptions import IdempotencyConflict, InputError, LedgerNotInitialised
from consentgate.ledger.events import GENESIS_HASH, EventBatch, EventDraft, EventKind, Source, digest_of
from consentgate.ledger.store import Ledger
from consentgate.timeutil import to_micros
from tests.conftest import NOW, at, register, set_setting
from tests.helpers import lift_guards as disable_guards


def _draft(
    member: int, key: str, value: str = "false", *, idem: str, when: str | None = "2025-01-01"
) -> EventDraft:
    return EventDraft(
        member,
        EventKind.setting_changed,
        key,
        value,
        None if when is None else to_micros(at(when)),
        Source.import_,
        "test",
        idem,
    )


def test_append_assigns_gapless_seq_and_chains_hashes(ledger: Ledger) -> None:
    """Each event gets the next seq and a hash over its content and the previous hash."""
    events = ledger.append([_draft(1, "genai_improvement", idem=f"k{i}") for i in range(3)])
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash
    assert all(digest_of(e) == e.hash for e in events)
    assert ledger.head() == (3, events[-1].hash)


def test_same_idempotency_key_and_content_returns_the_stored_event(ledger: Ledger) -> None:
    """A retried append is a no-op that returns the original event."""
    [first] = ledger.append([_draft(1, "genai_improvement", idem="retry")])
    [again] = ledger.append([_draft(1, "genai_improvement", idem="retry")])
    assert again == first
    assert ledger.watermark() == 1


def test_same_idempotency_key_with_other_content_is_a_conflict(ledger: Ledger) -> None:
    """Reusing a key for a different event is refused and appends nothing."""
    ledger.append([_draft(1, "genai_improvement", "false", idem="k")])
    with pytest.raises(IdempotencyConflict, match="seq 1"):
        ledger.append(
            [_draft(1, "genai_improvement", "true", idem="k"), _draft(2, "promotions", idem="other")]
        )
    assert ledger.watermark() == 1


def test_the_database_refuses_update_and_delete(ledger: Ledger) -> None:
    """Append-only is enforced by the database itself, not only by the absence of code paths."""
    ledger.append([_draft(1, "genai_improvement", idem="k")])
    for statement in ("UPDATE events SET value = 'true' WHERE seq = 1", "DELETE FROM events WHERE seq = 1"):
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(statement))
    assert ledger.member_events(1)[0].value == "false"


def test_member_events_are_never_back_dated(ledger: Ledger) -> None:
    """A member's own change cannot take effect before it was recorded."""
    register(ledger, 1, "DE")
    with pytest.raises(InputError, match="never back-dated"):
        set_setting(ledger, 1, "genai_improvement", False, "2025-01-01", source=Source.member)
    event = set_setting(ledger, 1, "genai_improvement", False, "2026-12-01", source=Source.member)
    assert event.effective_at >= event.recorded_at


def test_effective_at_none_means_the_moment_it_is_recorded(ledger: Ledger) -> None:
    """Without an explicit time the event takes effect when the ledger records it."""
    [event] = ledger.append([_draft(1, "genai_improvement", idem="now", when=None)])
    assert event.effective_at == event.recorded_at == to_micros(NOW)


def test_concurrent_appenders_keep_one_unbroken_chain(ledger_url: str) -> None:
    """Writers in parallel threads never fork the chain or reuse a seq."""
    ledger = Ledger.open(ledger_url, initialise=True)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                ledger.append([_draft(worker, "genai_improvement", idem=f"w{worker}-{i}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = ledger.verify()
    assert report.ok and report.events_checked == 100
    ledger.close()


def test_opening_an_uninitialised_database_names_the_fix(ledger_url: str) -> None:
    """Without a schema the ledger refuses to work and says which command fixes it."""
    with pytest.raises(LedgerNotInitialised, match="consentgate init"):
        Ledger.open(ledger_url)


def _tamper(ledger: Ledger, *statements: str) -> None:
    disable_guards(ledger)
    with ledger.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


@pytest.fixture
def chained(ledger: Ledger) -> Ledger:
    ledger.append([_draft(m, "genai_improvement", idem=f"k{m}") for m in range(1, 7)])
    assert ledger.verify().ok
    return ledger


def test_verify_names_a_changed_event(chained: Ledger) -> None:
    """Editing a value is found at that event's seq."""
    _tamper(chained, "UPDATE events SET value = 'true' WHERE seq = 4")
    report = chained.verify()
    assert (report.ok, report.bad_seq) == (False, 4)
    assert report.problem is not None and report.problem.startswith("changed")


def test_verify_names_a_missing_event(chained: Ledger) -> None:
    """Deleting an event in the middle is found where the gap starts."""
    _tamper(chained, "DELETE FROM events WHERE seq = 3")
    report = chained.verify()
    assert (report.ok, report.bad_seq) == (False, 3)
    assert report.problem is not None and report.problem.startswith("missing")


def test_verify_notices_a_removed_tail(chained: Ledger) -> None:
    """Deleting the newest events is found against the chain head."""
    _tamper(chained, "DELETE FROM events WHERE seq >= 5")
    report = chained.verify()
    assert (report.ok, report.bad_seq) == (False, 5)
    assert report.problem is not None and "missing" in report.problem


def test_verify_names_events_put_out_of_order(chained: Ledger) -> None:
    """Swapping two events' positions (seq) is reported as out of order."""
    _tamper(
        chained,
        "UPDATE events SET seq = -2 WHERE seq = 2",
        "UPDATE events SET seq = 2 WHERE seq = 3",
        "UPDATE events SET seq = 3 WHERE seq = -2",
    )
    report = chained.verify()
    assert (report.ok, report.bad_seq) == (False, 2)
    assert report.problem is not None and report.problem.startswith("out of order")


def test_verify_detects_a_recomputed_hash(chained: Ledger) -> None:
    """Changing an event and recomputing its own hash still breaks the next link."""
    event = chained.member_events(3)[0]
    new_hash = digest_of(replace(event, value="true"))
    _tamper(chained, f"UPDATE events SET value = 'true', hash = '{new_hash}' WHERE seq = 3")
    report = chained.verify()
    assert (report.ok, report.bad_seq) == (False, 4)


def _index_definitions(ledger: Ledger) -> list[tuple[str, str]]:
    query = (
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name"
        if ledger.dialect == "sqlite"
        else "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE tablename = 'events' AND schemaname = current_schema() ORDER BY indexname"
    )
    with ledger.engine.connect() as conn:
        return [(str(a), str(b)) for a, b in conn.execute(text(query))]


def test_a_large_bulk_append_keeps_indexes_chain_and_uniqueness(ledger: Ledger) -> None:
    """Big batches (which rebuild SQLite's indexes) leave the same indexes, an intact chain, and
    still refuse a reused idempotency key atomically."""
    before = _index_definitions(ledger)
    size = 60_000
    batch = EventBatch.empty()
    for i in range(size):
        batch.add(i % 5000, "setting_changed", "genai_improvement", "false", i, "import", "t", f"bulk:{i}")
    assert ledger.append_bulk(batch) == (size, 0)
    assert _index_definitions(ledger) == before
    assert ledger.verify().ok
    assert len(ledger.member_events(7)) == size // 5000

    again = EventBatch.empty()
    for i in range(size):
        value = "true" if i == size - 1 else "false"  # the last one reuses a key with other content
        again.add(
            i % 5000,
            "setting_changed",
            "genai_improvement",
            value,
            i,
            "import",
            "t",
            f"bulk:{i}" if i == size - 1 else f"bulk2:{i}",
        )
    with pytest.raises(IdempotencyConflict, match="bulk:59999"):
        ledger.append_bulk(again)
    assert ledger.watermark() == size
    assert _index_definitions(ledger) == before


def test_two_processes_appending_to_one_sqlite_file_keep_one_chain(tmp_path: Path) -> None:
    """Writers in separate processes serialise on ``<db>.write-lock``; every event lands, one chain."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Ledger.open(url, initialise=True).close()
    script = textwrap.dedent(
        """
        import sys
        from consentgate.ledger.events import EventDraft, EventKind, Source
        from consentgate.ledger.store import Ledger
        ledger = Ledger.open(sys.argv[1])
        for i in range(100):
            ledger.append([EventDraft(int(sys.argv[2]), EventKind.setting_changed, "genai_improvement",
                                      "false", None, Source.member, "t", f"{sys.argv[2]}:{i}")])
        ledger.close()
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, url, str(m)]) for m in (1, 2, 3)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    ledger = Ledger.open(url)
    report = ledger.verify()
    assert report.ok and report.events_checked == 300
    assert (tmp_path / "shared.db.write-lock").exists()
    ledger.close()
