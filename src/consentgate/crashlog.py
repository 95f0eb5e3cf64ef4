"""Where the full trace of a failure goes when the user is shown one line.

``--log-file`` (or ``CONSENTGATE_LOG_FILE``), else a new file under the user's cache folder
(``$XDG_CACHE_HOME/consentgate/crash/``, else ``~/.cache/consentgate/crash/``), else the temporary
folder; never the terminal. Used by the command line's error boundary (unexpected failures) and by
the Spark engine (a JVM failure is one ``error:`` line naming this file).
"""

from __future__ import annotations

import os
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

LOG_FILE_ENV = "CONSENTGATE_LOG_FILE"
_log_file: Path | None = None


def set_log_file(path: Path | None) -> None:
    """``--log-file``: where traces go (set by the command line's root callback)."""
    global _log_file
    _log_file = path


def crash_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "consentgate" / "crash"


def write_trace(exc: BaseException, argv: list[str], *, detail: str = "") -> Path | None:
    """Append ``exc``'s full trace (and ``detail``, e.g. the JVM's own trace) to the log file;
    returns its path, or None when no candidate folder can be written."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    text = f"consentgate {' '.join(argv)}\n{stamp} pid {os.getpid()}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    if detail:
        text += f"\n{detail}\n"
    chosen = _log_file or (Path(os.environ[LOG_FILE_ENV]) if os.environ.get(LOG_FILE_ENV) else None)
    candidates = [chosen] if chosen is not None else []
    candidates += [crash_folder() / f"crash-{stamp}-{os.getpid()}.log"]
    candidates += [Path(tempfile.gettempdir()) / f"consentgate-crash-{stamp}-{os.getpid()}.log"]
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            return path
        except OSError:
            continue
    return None


def trace_note(path: Path | None) -> str:
    """What the one line says of the trace: where it is, or that none could be written."""
    return f"the full trace is in {path}" if path is not None else "no trace could be written"
