"""The command line's error boundary: one line and an exit status for every failure, never a traceback."""

from __future__ import annotations

import errno
from pathlib import Path

import psycopg
import pytest

from consentgate import crashlog
from consentgate.cli import boundary
from consentgate.exceptions import InputError


def run(fail: BaseException | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[int, list[str]]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(crashlog.LOG_FILE_ENV, raising=False)
    crashlog.set_log_file(None)
    lines: list[str] = []

    def command() -> None:
        if fail is not None:
            raise fail

    return boundary.run(command, print_error=lines.append), lines


def test_a_domain_error_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, lines = run(InputError("row 3: field member_id: expected an integer"), monkeypatch, tmp_path)
    assert (code, lines) == (2, ["error: row 3: field member_id: expected an integer"])


def test_an_unexpected_failure_is_one_line_exit_70_and_a_trace_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, lines = run(ZeroDivisionError("division by zero"), monkeypatch, tmp_path)
    assert code == 70 and len(lines) == 1
    assert lines[0].startswith(
        "error: unexpected failure (ZeroDivisionError: division by zero); the full trace is in "
    )
    trace = Path(lines[0].rsplit(" ", 1)[1])
    assert trace.parent == tmp_path / "cache" / "consentgate" / "crash"
    text = trace.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text


def test_log_file_chooses_where_the_trace_goes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    chosen = tmp_path / "logs" / "consentgate.log"
    crashlog.set_log_file(chosen)
    lines: list[str] = []

    def command() -> None:
        raise KeyError("x")

    try:
        assert boundary.run(command, print_error=lines.append) == 70
    finally:
        crashlog.set_log_file(None)
    assert lines[0].endswith(str(chosen)) and "KeyError" in chosen.read_text()


def test_a_refused_write_names_the_path_and_exit_74(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/part-0.parquet")
    code, lines = run(full, monkeypatch, tmp_path)
    assert (code, lines) == (74, ["error: cannot write /data/out/part-0.parquet: No space left on device"])
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/in.csv")
    assert run(missing, monkeypatch, tmp_path)[1] == [
        "error: cannot read /data/in.csv: No such file or directory"
    ]


def test_interrupt_and_exit_codes_pass_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert run(KeyboardInterrupt(), monkeypatch, tmp_path) == (130, ["interrupted"])
    assert run(SystemExit(3), monkeypatch, tmp_path) == (3, [])
    assert run(None, monkeypatch, tmp_path) == (0, [])


def test_a_note_says_what_was_being_done(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/out")
    missing.add_note("create the --out folder")
    assert run(missing, monkeypatch, tmp_path)[1] == [
        "error: cannot create the --out folder /proc/out: No such file or directory"
    ]


RECOVERING = (
    'connection failed: connection to server at "127.0.0.1", port 5433 failed: FATAL:  the database'
    " system is not yet accepting connections\nDETAIL:  Consistent recovery state has not been yet reached."
)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError(RECOVERING),  # what psycopg raised in bench/outage.py's restart window
        psycopg.errors.CannotConnectNow("the database system is starting up"),  # SQLSTATE 57P03
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),  # 57P01
        psycopg.errors.ConnectionFailure("connection lost"),  # class 08
    ],
    ids=["recovery-message", "57P03", "57P01", "08006"],
)
def test_a_postgresql_server_restarting_or_shutting_down_is_exit_69(
    error: Exception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, lines = run(error, monkeypatch, tmp_path)
    assert code == 69 and lines[0].startswith("error: the ledger") and "is not reachable" in lines[0]
