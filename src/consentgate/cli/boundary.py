"""The command line's one error boundary: every failure becomes one line on stderr and an exit status.

- exit 2, a domain error (bad input, a refused action: ``ConsentgateError``): ``error: <what was wrong>``
- exit 74, the system refused a read or write (disk full, permission, read-only):
  ``error: cannot write <path>: <reason>``
- exit 69, the ledger's database is down or locked: ``error: the ledger <db> is not reachable``
- exit 70, anything unexpected (a bug): ``error: unexpected failure (<type>: <message>); the full trace
  is in <file>``
- exit 130, interrupted (Ctrl-C): ``interrupted``

The full trace of an unexpected failure is written to ``--log-file`` (or ``CONSENTGATE_LOG_FILE``), else
to a new file under the user's cache folder (``$XDG_CACHE_HOME/consentgate/crash/``, else
``~/.cache/consentgate/crash/``, else the temporary folder); never to the terminal. Exit statuses 70
and 74 are ``EX_SOFTWARE`` and ``EX_IOERR`` of BSD's sysexits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable

from consentgate.crashlog import trace_note, write_trace
from consentgate.exceptions import ConsentgateError, one_line
from consentgate.storage import database_unavailable, storage_refusal

EXIT_INPUT = 2
EXIT_SOFTWARE = 70
EXIT_IOERR = 74
EXIT_UNAVAILABLE = 69
EXIT_INTERRUPTED = 130

_READING = frozenset({errno.ENOENT, errno.EISDIR, errno.ENOTDIR})


_db: str | None = None


def set_database(url: str | None) -> None:
    """``--db``: named when the database refuses a write."""
    global _db
    _db = url


def describe_os_error(exc: OSError) -> str:
    """``cannot write /data/out/x.parquet: No space left on device``: the path and what was refused."""
    reason = "; ".join(line.strip() for line in (exc.strerror or str(exc)).splitlines() if line.strip())
    path = exc.filename
    if path is None:
        return f"the operating system refused an operation: {reason}"
    # What was being done, when the code said so (``exc.add_note("create the folder")``); else a
    # guess from the errno: a missing path was being read, anything else written.
    notes = getattr(exc, "__notes__", None)
    verb = notes[-1] if notes else ("read" if exc.errno in _READING else "write")
    target = f"{os.fsdecode(path)}" + (f" -> {os.fsdecode(exc.filename2)}" if exc.filename2 else "")
    return f"cannot {verb} {target}: {reason}"


def run(app: Callable[[], object], *, print_error: Callable[[str], None]) -> int:
    """Run ``app`` and turn whatever escapes it into one line and an exit status (0 when it returned)."""
    try:
        app()
    except SystemExit as exc:  # typer's and click's own exits (including --help and usage errors)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ConsentgateError as exc:
        print_error(f"error: {exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`consentgate … | head`): nothing left to say.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except OSError as exc:
        print_error(f"error: {describe_os_error(exc)}")
        return EXIT_IOERR
    except Exception as exc:
        down = database_unavailable(exc)
        if down is not None:
            ledger = f" {_db}" if _db else ""
            print_error(f"error: the ledger{ledger} is {down}; nothing was changed, try again")
            return EXIT_UNAVAILABLE
        refused = storage_refusal(exc)
        if refused is not None:
            ledger = f" {_db}" if _db else ""
            print_error(f"error: cannot write the ledger{ledger}: {refused}; nothing was changed")
            return EXIT_IOERR
        where = write_trace(exc, sys.argv[1:])
        print_error(
            f"error: unexpected failure ({type(exc).__name__}: {one_line(exc, 160)}); {trace_note(where)}"
        )
        return EXIT_SOFTWARE
    return 0
