"""Login rate limiting: at most N failed attempts per client and username within a sliding window."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable


class LoginLimiter:
    """In-process and per server; behind several servers, limit at the proxy as well."""

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
        key = (client, username.strip().lower())
        with self._lock:
            stamps = self._recent(key)
            if len(stamps) < self.attempts:
                return None
            return max(1, int(stamps[0] + self.window - self.clock()) + 1)

    def failed(self, client: str, username: str) -> None:
        with self._lock:
            self._recent((client, username.strip().lower())).append(self.clock())

    def succeeded(self, client: str, username: str) -> None:
        with self._lock:
            self._failures.pop((client, username.strip().lower()), None)
