"""Group commit (web/writer.py): shared transactions, each caller gets its own events, failures stay alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import pytest

from consentgate.exceptions import IdempotencyConflict, LedgerError
from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.store import Ledger
from consentgate.timeutil import to_micros
from consentgate.web.writer import GroupCommitWriter
from tests.conftest import at

WHEN = to_micros(at("2026-01-01T00:00:00Z"))


def draft(member_id: int, value: bool = True, *, key: str | None = None) -> EventDraft:
    return EventDraft(
        member_id,
        EventKind.setting_changed,
        "genai_improvement",
        "true" if value else "false",
        WHEN,
        Source.import_,
        "test",
        key or f"writer:{uuid.uuid4().hex}",
    )


class Gate:
    """Holds the writer inside its first ``Ledger.append`` until released, so the next requests
    queue up and are taken as one batch; records the size of every append."""

    def __init__(self, ledger: Ledger) -> None:
        self.real = ledger.append
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        ledger.append = self  # type: ignore[method-assign]

    def __call__(self, drafts: Sequence[EventDraft]) -> list[LedgerEvent]:
        self.sizes.append(len(drafts))
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return self.real(drafts)


def run_threads(targets: Sequence[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()


def wait_pending(writer: GroupCommitWriter, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(writer._pending) < n:  # the test waits for the queue to fill
        assert time.monotonic() < deadline, "requests did not queue up"
        time.sleep(0.005)


def test_concurrent_appends_get_their_own_events(ledger: Ledger) -> None:
    writer = GroupCommitWriter(ledger)
    threads, per_thread = 16, 20
    barrier = threading.Barrier(threads)
    results: dict[int, list[tuple[list[EventDraft], list[LedgerEvent]]]] = {}
    errors: list[BaseException] = []

    def work(t: int) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            mine = results.setdefault(t, [])
            try:
                for i in range(per_thread):
                    drafts = [draft(t * 1000 + i, value=bool(j % 2)) for j in range(1 + i % 3)]
                    mine.append((drafts, writer.append(drafts)))
            except BaseException as exc:  # reported below
                errors.append(exc)

        return run

    run_threads([work(t) for t in range(threads)])
    writer.close()
    assert errors == []
    seqs: list[int] = []
    for pairs in results.values():
        for drafts, events in pairs:
            assert [e.idempotency_key for e in events] == [d.idempotency_key for d in drafts]
            assert [(e.member_id, e.value) for e in events] == [(d.member_id, d.value) for d in drafts]
            # One request's events are consecutive: they were appended atomically, in order.
            assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
            seqs.extend(e.seq for e in events)
    total = sum(1 + i % 3 for i in range(per_thread)) * threads
    assert len(seqs) == len(set(seqs)) == total
    assert sorted(seqs) == list(range(1, total + 1))
    report = ledger.verify()
    assert report.ok, report
    assert report.events_checked == total
    assert writer.transactions <= threads * per_thread


def test_pending_requests_share_one_transaction(ledger: Ledger) -> None:
    writer = GroupCommitWriter(ledger)
    gate = Gate(ledger)
    out: dict[int, list[LedgerEvent]] = {}

    def request(i: int) -> Callable[[], None]:
        def run() -> None:
            out[i] = writer.append([draft(i), draft(i, value=False)])

        return run

    first = threading.Thread(target=request(0))
    first.start()
    assert gate.entered.wait(30)
    others = [threading.Thread(target=request(i)) for i in range(1, 11)]
    for thread in others:
        thread.start()
    wait_pending(writer, 10)
    gate.release.set()
    for thread in [first, *others]:
        thread.join(30)
    writer.close()
    assert gate.sizes == [2, 20]  # the first request alone, then the ten queued ones together
    assert writer.transactions == 2
    assert sorted(e.seq for events in out.values() for e in events) == list(range(1, 23))
    for i, events in out.items():
        assert [(e.member_id, e.value) for e in events] == [(i, "true"), (i, "false")]
    assert ledger.verify().ok


def test_an_idempotency_conflict_fails_only_its_request(ledger: Ledger) -> None:
    [original] = ledger.append([draft(1, True, key="taken")])
    writer = GroupCommitWriter(ledger)
    gate = Gate(ledger)
    out: dict[str, list[LedgerEvent] | BaseException] = {}

    def request(name: str, drafts: list[EventDraft]) -> threading.Thread:
        def run() -> None:
            try:
                out[name] = writer.append(drafts)
            except BaseException as exc:  # checked below
                out[name] = exc

        return threading.Thread(target=run)

    first = request("first", [draft(2)])
    first.start()
    assert gate.entered.wait(30)
    queued = [
        request("good-a", [draft(3), draft(4)]),
        # Atomic per request: its fresh first draft must not be committed either.
        request("bad", [draft(5), draft(1, False, key="taken")]),
        request("good-b", [draft(6)]),
        request("retry", [draft(1, True, key="taken")]),  # same content: the stored event
    ]
    for thread in queued:
        thread.start()
        wait_pending(writer, queued.index(thread) + 1)  # keep the arrival order
    gate.release.set()
    for thread in [first, *queued]:
        thread.join(30)
    writer.close()

    assert isinstance(out["bad"], IdempotencyConflict)
    for name, members in (("first", [2]), ("good-a", [3, 4]), ("good-b", [6])):
        events = out[name]
        assert isinstance(events, list), events
        assert [e.member_id for e in events] == members
    assert out["retry"] == [original]
    # The retry shares a key with "bad", so it waits for the next batch; the combined try of the
    # other three fails as a whole, then each is appended alone.
    assert gate.sizes == [1, 5, 2, 2, 1, 1]
    stored = {e.member_id for e in ledger.iter_events()}
    assert stored == {1, 2, 3, 4, 6}
    report = ledger.verify()
    assert report.ok, report
    assert report.events_checked == 5


def test_a_retry_racing_its_original_gets_the_same_event(ledger: Ledger) -> None:
    writer = GroupCommitWriter(ledger)
    gate = Gate(ledger)
    out: list[list[LedgerEvent]] = []
    twin = [draft(7, key="twin")]

    def run(drafts: list[EventDraft]) -> threading.Thread:
        thread = threading.Thread(target=lambda: out.append(writer.append(drafts)))
        thread.start()
        return thread

    threads = [run([draft(8)])]
    assert gate.entered.wait(30)
    threads += [run(twin), run([draft(9)]), run(twin)]
    wait_pending(writer, 3)
    gate.release.set()
    for thread in threads:
        thread.join(30)
    writer.close()
    # The second twin waits for the next batch instead of failing the combined append.
    assert gate.sizes == [1, 2, 1]
    twins = [events for events in out if events[0].idempotency_key == "twin"]
    assert len(twins) == 2 and twins[0] == twins[1]
    assert ledger.verify().events_checked == 3


def test_async_callers_and_close(ledger: Ledger) -> None:
    writer = GroupCommitWriter(ledger)

    async def many() -> list[list[LedgerEvent]]:
        return await asyncio.gather(*(writer.append_async([draft(i)]) for i in range(50)))

    results = asyncio.run(many())
    assert sorted(events[0].seq for events in results) == list(range(1, 51))
    assert [events[0].member_id for events in results] == list(range(50))
    writer.close()
    with pytest.raises(LedgerError, match="closed"):
        writer.append([draft(99)])
    assert writer.append([]) == []
    assert ledger.verify().ok
