"""Storage refusals (disk full, read-only, permission) named by the path being written.

Arrow and DuckDB raise ``OSError`` without a file name (``Error writing bytes to file. Detail:
[errno 28] No space left on device``) and SQLite an ``OperationalError`` (``database or disk is
full``). ``located`` gives the first a path and a clean reason; ``storage_refusal`` recognises the
second anywhere in an exception's chain. The CLI's boundary prints either as one line, exit 74; the
API answers 507.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

_ERRNO = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)
_FULL = ("database or disk is full", "no space left on device", "disk full", "could not extend file")


def located(exc: OSError, path: Path | str) -> OSError:
    """``exc`` with ``path`` as its file name (when it has none) and the errno's words as reason."""
    if exc.filename is not None:
        return exc
    code = exc.errno
    if code is None:
        found = _ERRNO.search(str(exc))
        code = int(found.group(1)) if found else None
    reason = os.strerror(code) if code else (exc.strerror or str(exc).strip().splitlines()[0])
    return OSError(code or errno.EIO, reason, str(path))


def storage_refusal(exc: BaseException) -> str | None:
    """The reason, if ``exc`` (or what caused it) is the database or the disk refusing a write."""
    for text in _texts(exc):
        for words in _FULL:
            if words in text:
                return (
                    "the database or the disk is full" if "database" in words else "no space left on device"
                )
        if "readonly database" in text or "read-only file system" in text:
            return "the database or its folder is read-only"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (a driver's error under SQLAlchemy's), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)


def _texts(exc: BaseException) -> Iterator[str]:
    """The lower-cased messages of ``exc`` and what caused it."""
    for cause in _chain(exc):
        yield str(cause).lower()


_UNAVAILABLE = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "connection is closed",
    "consuming input failed",
    "database is locked",
)


_UNAVAILABLE_STATES = ("08", "57P")
"""SQLSTATE classes of a server that cannot answer now: connection exceptions, and operator
intervention (shutting down, crash recovery: 57P01 to 57P05, "not yet accepting connections")."""


def database_unavailable(exc: BaseException) -> str | None:
    """The reason, if ``exc`` (or what caused it) says the database cannot be reached or is busy
    (PostgreSQL down, restarting or in crash recovery, SQLite locked by another process past the
    busy timeout)."""
    for cause in _chain(exc):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
            return "not reachable"
    for text in _texts(exc):
        for words in _UNAVAILABLE:
            if words in text:
                return "locked by another process" if words == "database is locked" else "not reachable"
    return None
