"""Group commit: concurrent requests share one ledger transaction (one fsync) instead of one each.

Every web request that records something hands its drafts to ``GroupCommitWriter.append`` and
waits. One writer thread takes everything that is pending (up to ``max_requests`` requests and
``max_events`` drafts), appends it with ONE ``Ledger.append`` call and then wakes each request with
its own events. No timer: while one transaction commits, the next requests queue up, so batches grow
with the load and a lone request is committed at once.

A request is acknowledged only after the commit that holds its events returned. If a combined
append raises (an idempotency conflict or bad input in one request, a lost connection), nothing of
it was committed (one transaction), and the writer appends each request's drafts on its own: one bad
request fails alone and never costs another its events. Re-appending is safe even if the failure
came after the commit: every draft carries an idempotency key, so an event already in the ledger is
returned as stored, not appended twice.

When the database itself refuses (locked by another process past the busy timeout, down, full), the
whole batch and every request that queued behind it get that answer at once (503 or 507 on the
web): each would otherwise wait out the busy timeout again, one after another.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence

from consentgate.exceptions import LedgerError
from consentgate.ledger.events import EventDraft, LedgerEvent
from consentgate.ledger.store import Ledger
from consentgate.storage import database_unavailable, storage_refusal

MAX_REQUESTS = 128
"""Requests combined into one transaction at most."""
MAX_EVENTS = 20_000
"""Drafts combined into one transaction at most (a single larger request still goes alone)."""
IDLE_SECONDS = 30.0
"""The thread ends after this long without work (and starts again on the next append)."""


def _database_refused(exc: BaseException) -> bool:
    return database_unavailable(exc) is not None or storage_refusal(exc) is not None


class _Request:
    """One caller's drafts and, once committed, its events or its error."""

    __slots__ = ("drafts", "error", "events", "keys", "notify")

    def __init__(self, drafts: list[EventDraft], notify: Callable[[], None]) -> None:
        self.drafts = drafts
        self.keys = {d.idempotency_key for d in drafts}
        self.events: list[LedgerEvent] = []
        self.error: BaseException | None = None
        self.notify = notify

    def result(self) -> list[LedgerEvent]:
        if self.error is not None:
            raise self.error
        return self.events


class GroupCommitWriter:
    """Appends the drafts of concurrent callers in shared transactions; see the module docstring.

    The thread starts on first use and ends when idle for ``IDLE_SECONDS``; ``close()`` commits
    what is pending, then stops it. It is a daemon thread, so a process that never calls ``close()``
    still exits.
    """

    def __init__(
        self, ledger: Ledger, *, max_requests: int = MAX_REQUESTS, max_events: int = MAX_EVENTS
    ) -> None:
        if max_requests < 1 or max_events < 1:
            raise ValueError("max_requests and max_events must be positive")
        self.ledger = ledger
        self.max_requests = max_requests
        self.max_events = max_events
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.transactions = 0
        """Combined appends committed (for tests and benchmarks)."""

    # -- callers -------------------------------------------------------------------------------

    def append(self, drafts: Sequence[EventDraft]) -> list[LedgerEvent]:
        """Append ``drafts`` atomically; returns their events once committed (blocks until then)."""
        if not drafts:
            return []
        done = threading.Event()
        request = _Request(list(drafts), done.set)
        self._submit(request)
        done.wait()
        return request.result()

    async def append_async(self, drafts: Sequence[EventDraft]) -> list[LedgerEvent]:
        """``append`` for an ``async def`` route: waits without blocking the event loop."""
        if not drafts:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            def settle() -> None:
                if not future.done():
                    future.set_result(None)

            loop.call_soon_threadsafe(settle)

        request = _Request(list(drafts), wake)
        self._submit(request)
        await future
        return request.result()

    def close(self) -> None:
        """Commit what is pending, then stop the thread. Appends after this raise LedgerError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _submit(self, request: _Request) -> None:
        with self._cond:
            if self._closed:
                raise LedgerError("the ledger writer is closed (the server is shutting down)")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="consentgate-ledger-writer", daemon=True
                )
                self._thread.start()
            self._pending.append(request)
            self._cond.notify()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    if not self._cond.wait(IDLE_SECONDS) and not self._pending:
                        self._thread = None  # the next append starts a new thread
                        return
                if not self._pending:
                    return  # closed and drained
                batch = self._take()
            self._commit(batch)

    def _take(self) -> list[_Request]:
        """The next batch, in arrival order. A request that shares an idempotency key with one
        already in the batch (a client's retry racing its original) waits for the next batch, so
        it finds the first one's event instead of failing the combined append."""
        batch: list[_Request] = []
        keys: set[str] = set()
        events = 0
        deferred: list[_Request] = []
        while self._pending and len(batch) < self.max_requests:
            request = self._pending[0]
            if batch and events + len(request.drafts) > self.max_events:
                break
            self._pending.popleft()
            if not keys.isdisjoint(request.keys):
                deferred.append(request)
                continue
            batch.append(request)
            keys |= request.keys
            events += len(request.drafts)
        self._pending.extendleft(reversed(deferred))
        return batch

    def _commit(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                self._alone(batch[0])
                return
            try:
                events = self.ledger.append([d for r in batch for d in r.drafts])
            except Exception as exc:
                if _database_refused(exc):
                    # The database itself refused (locked, down, full): each request alone would
                    # only wait out the busy timeout again, one after another. All get the answer.
                    for request in batch:
                        request.error = exc
                    return
                for request in batch:  # one request's content failed the batch: each on its own
                    self._alone(request)
                return
            self.transactions += 1
            start = 0
            for request in batch:
                end = start + len(request.drafts)
                request.events = events[start:end]
                start = end
        except BaseException as exc:  # the thread must never leave a caller waiting
            for request in batch:
                if not request.events and request.error is None:
                    request.error = exc
        finally:
            for request in batch:
                request.notify()
            refused = next(
                (r.error for r in batch if r.error is not None and _database_refused(r.error)), None
            )
            if refused is not None:
                self._refuse_waiting(refused)

    def _refuse_waiting(self, error: BaseException) -> None:
        """The database refused just now (locked past the busy timeout, down, full): the requests
        that queued meanwhile get the same answer at once instead of waiting out another timeout
        each batch; a client retries after ``Retry-After``, and the next request tries again."""
        with self._cond:
            waiting = list(self._pending)
            self._pending.clear()
        for request in waiting:
            request.error = error
            request.notify()

    def _alone(self, request: _Request) -> None:
        try:
            request.events = self.ledger.append(request.drafts)
            self.transactions += 1
        except Exception as exc:  # handed to the caller, who raises it
            request.error = exc
