"""Helpers that several test modules share: the CLI run as a subprocess, an attacker with write
access to the ledger's database, and a local HTTP endpoint that receives POSTs.

The attacker lifts the append-only triggers (as the database's owner or a superuser can), edits
events, and may put the triggers back and recompute hashes so that the chain verifies in itself.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import text

from consentgate.ledger.events import GENESIS_HASH, digest_of
from consentgate.ledger.guards import restore_guards
from consentgate.ledger.store import Ledger


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    env["COLUMNS"] = "80"  # what a pipe or a small terminal gets, whatever the test runner's terminal
    env.update(extra)
    return env


def cg(db: str | None, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m consentgate [--db DB] ARGS`` and capture its output."""
    command = [sys.executable, "-m", "consentgate", *(["--db", db] if db else []), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=cwd, env=cli_env(**env), check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2, one 'error: ...' line on stderr, no traceback; returns that line."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def flat(text: str) -> str:
    """Output with rich's line wrapping undone (runs of whitespace become one space)."""
    return " ".join(text.split())


def lift_guards(ledger: Ledger) -> None:
    """Drop the append-only triggers."""
    with ledger.engine.begin() as conn:
        if ledger.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS events_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS events_no_delete"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS events_append_only ON events"))


def put_guards_back(ledger: Ledger) -> None:
    """What a careful attacker does last: recreate the triggers, so the guard looks untouched."""
    assert restore_guards(ledger), "the guard was not down"


def tamper(ledger: Ledger, *statements: str) -> None:
    """Run SQL against the events with the guard lifted."""
    lift_guards(ledger)
    with ledger.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def cut_tail(ledger: Ledger, keep: int) -> None:
    """Delete every event after ``keep`` and rewind ``ledger_head`` to match: a chain valid in itself."""
    tamper(ledger, f"DELETE FROM events WHERE seq > {int(keep)}")
    with ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": keep, "hash": ledger.hash_at(keep) or GENESIS_HASH},
        )


def rewrite_from(ledger: Ledger, seq: int, value: str | None = "true") -> None:
    """Set event ``seq``'s value (None: leave it) and recompute every later hash and the head."""
    events = list(ledger.iter_events())
    prev = events[seq - 2].hash if seq > 1 else GENESIS_HASH
    lift_guards(ledger)
    with ledger.engine.begin() as conn:
        for event in events[seq - 1 :]:
            changed = value if event.seq == seq and value is not None else event.value
            forged = replace(event, value=changed, prev_hash=prev)
            forged = replace(forged, hash=digest_of(forged))
            conn.execute(
                text("UPDATE events SET value = :value, prev_hash = :prev, hash = :hash WHERE seq = :seq"),
                {"value": forged.value, "prev": forged.prev_hash, "hash": forged.hash, "seq": forged.seq},
            )
            prev = forged.hash
        conn.execute(text("UPDATE ledger_head SET hash = :hash WHERE id = 1"), {"hash": prev})


class Receiver:
    """A local HTTP server that answers every POST with ``status`` and keeps the bodies."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(receiver.status)
                if 300 <= receiver.status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(args: list[str], *, cwd: Path, ready: str, timeout: float = 120) -> Iterator[Path]:
    """``python -m consentgate ARGS`` as a server process until the block ends; waits until
    ``ready`` (a URL) answers. Yields the path of the server's log (stdout and stderr)."""
    import httpx
    import pytest

    log_path = cwd / f"server-{os.getpid()}-{threading.get_ident()}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "consentgate", *args], cwd=cwd, env=cli_env(), stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + timeout  # a cold start on a loaded 2-core machine
            while True:
                try:
                    httpx.get(ready, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        pytest.fail(f"the server did not start: {log_path.read_text()}")
                    time.sleep(0.2)
            yield log_path
        finally:
            server.terminate()
            server.wait(timeout=20)


def refuse_network(monkeypatch: Any) -> None:
    """Make every outgoing connection fail (for code that must work offline)."""
    import socket

    def refuse(*_: object, **__: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


PG_DSN = os.environ.get("CONSENTGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema_url(prefix: str = "cg_test") -> Iterator[str]:
    """A SQLAlchemy URL for a new, empty schema of the test PostgreSQL (dropped afterwards)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- an S3-compatible store: moto's server mode, and a proxy in front of it that injects faults --


@contextmanager
def moto_server(log_path: Path, timeout: float = 60) -> Iterator[str]:
    """``python -m moto.server`` on a free port (a real HTTP S3 endpoint) until the block ends;
    yields its endpoint URL."""
    import httpx

    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    httpx.get(url, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(f"moto did not start: {log_path.read_text()}") from None
                    time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)


_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
)


class FaultyStore:
    """An HTTP proxy in front of an S3 endpoint that misbehaves on request, as stores do:

    - ``fail = 500`` answers every request (or those whose path contains ``only``) with that status;
    - ``delay = seconds`` answers only after that long (a slow store);
    - ``access_key = KEY`` refuses requests signed with another key (403 InvalidAccessKeyId);
    - ``read_only = True`` refuses writes and deletes (403 AccessDenied), as a bucket policy does.

    ``requests`` keeps (method, path) of what reached it.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.fail: int | None = None
        self.only: str | None = None
        self.delay = 0.0
        self.access_key: str | None = None
        self.read_only = False
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if not any(name.lower() == "content-length" for name, _ in headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _refuse(self, code: str, message: str) -> None:
                body = _DENIED.format(code=code, message=message).encode()
                self._answer(403, body, [("Content-Type", "application/xml")])

            def _handle(self) -> None:
                body = self._body()
                proxy.requests.append((self.command, self.path))
                if proxy.delay:
                    time.sleep(proxy.delay)
                credential = self.headers.get("Authorization", "")
                key = (
                    credential.split("Credential=", 1)[-1].split("/", 1)[0]
                    if "Credential=" in credential
                    else ""
                )
                if proxy.access_key is not None and key != proxy.access_key:
                    self._refuse("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist")
                elif proxy.read_only and self.command in ("PUT", "POST", "DELETE"):
                    self._refuse("AccessDenied", "Access Denied")
                elif proxy.fail is not None and (proxy.only is None or proxy.only in self.path):
                    error = _DENIED.format(code="InternalError", message="We encountered an internal error")
                    self._answer(proxy.fail, error.encode(), [("Content-Type", "application/xml")])
                else:
                    self._forward(body)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                hop = ["transfer-encoding", "connection", "server", "date"]
                if self.command != "HEAD":  # a HEAD's length is the object's, not its empty body's
                    hop.append("content-length")
                passed = [(k, v) for k, v in answer.getheaders() if k.lower() not in hop]
                self._answer(answer.status, data, passed)

            def do_GET(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def heal(self) -> None:
        """Behave again."""
        self.fail, self.only, self.delay, self.access_key, self.read_only = None, None, 0.0, None, False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
