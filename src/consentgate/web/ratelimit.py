"""Login rate limiting: at most N failed attempts per client and username within a sliding window.

Three stores for one rule: ``LoginLimiter`` in the process (tests, one-process tools);
``SharedLoginLimiter`` in the ledger's database (the portal's default: every worker and every server
on one ledger count the same attempts); ``RedisLoginLimiter`` in Redis through the ``limits``
library (``serve --rate-limit-store redis://…``), for a fleet that keeps its counters there. A store
that cannot be reached refuses the login (503), it never lets an unlimited number of guesses through.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy import Engine, delete, func, insert, select

from consentgate.exceptions import ServiceUnavailable, one_line
from consentgate.ledger.schema import login_failures


class Limiter(Protocol):
    def retry_after(self, client: str, username: str) -> int | None: ...
    def failed(self, client: str, username: str) -> None: ...
    def succeeded(self, client: str, username: str) -> None: ...


def _key(client: str, username: str) -> tuple[str, str]:
    """What the limit counts by, in every store: the client and the username as typed, normalised."""
    return client[:64], username.strip().lower()[:128]


class LoginLimiter:
    """In-process: for tests and one-process tools. The portal uses ``SharedLoginLimiter``."""

    def __init__(
        self, attempts: int, window_seconds: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        stamps = self._failures[key]
        horizon = self.clock() - self.window
        while stamps and stamps[0] < horizon:
            stamps.popleft()
        return stamps

    def retry_after(self, client: str, username: str) -> int | None:
        """Seconds to wait if this client has used up its attempts for this username, else None."""
        key = _key(client, username)
        with self._lock:
            stamps = self._recent(key)
            if len(stamps) < self.attempts:
                return None
            return max(1, int(stamps[0] + self.window - self.clock()) + 1)

    def failed(self, client: str, username: str) -> None:
        with self._lock:
            self._recent(_key(client, username)).append(self.clock())

    def succeeded(self, client: str, username: str) -> None:
        with self._lock:
            self._failures.pop(_key(client, username), None)


class SharedLoginLimiter:
    """The same limit, kept in the ledger's database (table ``login_failures``): every worker of
    ``serve --workers N`` and every server on the same database count the same attempts, so more
    processes do not mean more guesses. Times are wall-clock microseconds (shared across hosts)."""

    def __init__(
        self, engine: Engine, attempts: int, window_seconds: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock() * 1_000_000)

    def retry_after(self, client: str, username: str) -> int | None:
        who, name = _key(client, username)
        horizon = self._now() - self.window * 1_000_000
        with self.engine.connect() as conn:
            count, first = conn.execute(
                select(func.count(), func.min(login_failures.c.at)).where(
                    login_failures.c.client == who,
                    login_failures.c.username == name,
                    login_failures.c.at >= horizon,
                )
            ).one()
        if int(count) < self.attempts or first is None:
            return None
        return max(1, int((int(first) - horizon) / 1_000_000) + 1)

    def failed(self, client: str, username: str) -> None:
        who, name = _key(client, username)
        now = self._now()
        with self.engine.begin() as conn:
            conn.execute(insert(login_failures).values(client=who, username=name, at=now))
            # Attempts older than the window count for nothing: keep the table small.
            conn.execute(delete(login_failures).where(login_failures.c.at < now - self.window * 1_000_000))

    def succeeded(self, client: str, username: str) -> None:
        who, name = _key(client, username)
        with self.engine.begin() as conn:
            conn.execute(
                delete(login_failures).where(
                    login_failures.c.client == who, login_failures.c.username == name
                )
            )


class RedisLoginLimiter:
    """The same limit in Redis (``limits``' moving window): for servers that do not share a ledger
    database connection budget, or already keep their counters in Redis."""

    def __init__(self, url: str, attempts: int, window_seconds: int) -> None:
        from limits import RateLimitItemPerSecond
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.url = url
        self.item = RateLimitItemPerSecond(attempts, window_seconds, namespace="consentgate-login")
        self.storage = storage_from_string(url, wrap_exceptions=True)
        self.limiter = MovingWindowRateLimiter(self.storage)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Any error of the store (``limits`` wraps them in one class) refuses the login: 503."""
        try:
            yield
        except Exception as exc:
            raise ServiceUnavailable(
                f"the login rate-limit store is not reachable ({one_line(exc, 200)}); try again"
            ) from exc

    def retry_after(self, client: str, username: str) -> int | None:
        with self._reachable():
            stats = self.limiter.get_window_stats(self.item, *_key(client, username))
        if stats.remaining > 0:
            return None
        return max(1, int(stats.reset_time - time.time()) + 1)

    def failed(self, client: str, username: str) -> None:
        with self._reachable():
            self.limiter.hit(self.item, *_key(client, username))

    def succeeded(self, client: str, username: str) -> None:
        with self._reachable():
            self.limiter.clear(self.item, *_key(client, username))
