"""Faults of the database itself, with real servers: a private PostgreSQL cluster stopped with an
immediate shutdown and started again under the running portal, and a SQLite file locked by another
process. While the database cannot answer, writes get 503 with Retry-After (never a 500); afterwards
the same portal process answers again, and every acknowledged change is in the ledger."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consentgate.ledger import database
from consentgate.ledger.store import Ledger
from consentgate.web import PortalConfig, create_app
from consentgate.web.accounts import AccountStore, Scope
from tests.conftest import register

MEMBER = 1001
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    url: str
    folder: Path
    port: int
    bin: Path

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [
                RUNUSER,
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop_immediately(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found or not Path(RUNUSER).exists():
        pytest.fail("PostgreSQL's initdb and runuser are needed (Debian's postgresql package, as root)")
    folder = Path(tempfile.mkdtemp(prefix="cg-pg-"))
    folder.chmod(0o755)  # the postgres user must reach its data folder
    shutil.chown(folder, "postgres")
    binaries = Path(found[-1]).parent
    subprocess.run(
        [RUNUSER, "-u", "postgres", "--", str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust",
         "-U", "postgres", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    made = Cluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", folder, port, binaries)
    made.start()
    try:
        yield made
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            made.stop_immediately()
        shutil.rmtree(folder, ignore_errors=True)


def _portal(url: str) -> tuple[TestClient, Ledger, dict[str, str]]:
    ledger = Ledger.open(url, initialise=True)
    register(ledger, MEMBER, "DE", registered_at="2015-01-01T00:00:00Z")
    _, secret = AccountStore(ledger).create_token(name="writer", scopes=frozenset(Scope))
    app = create_app(PortalConfig(db="(fault test)", secret_key="k"), ledger=ledger)
    return TestClient(app, raise_server_exceptions=False), ledger, {"authorization": f"Bearer {secret}"}


def _put(client: TestClient, headers: dict[str, str], value: bool, key: str) -> tuple[int, dict[str, str]]:
    answer = client.put(
        f"/api/v1/members/{MEMBER}/settings/genai_improvement",
        json={"value": value},
        headers={**headers, "idempotency-key": key},
    )
    return answer.status_code, dict(answer.headers)


def _stored_keys(ledger: Ledger) -> set[str]:
    return {e.idempotency_key for e in ledger.member_events(MEMBER)}


def test_postgresql_stopped_and_started_under_the_running_portal(cluster: Cluster) -> None:
    client, ledger, headers = _portal(cluster.url)
    acknowledged: list[str] = []
    for i in range(3):
        status, _ = _put(client, headers, i % 2 == 0, f"before-{i}")
        assert status == 200
        acknowledged.append(f"before-{i}")
    cluster.stop_immediately()
    during = [_put(client, headers, True, f"during-{i}") for i in range(3)]
    assert [status for status, _ in during] == [503, 503, 503], during
    assert all(
        h.get("retry-after") == "5" and h["content-type"] == "application/problem+json" for _, h in during
    )
    cluster.start()
    for i in range(3):  # the same process reconnects by itself
        status, _ = _put(client, headers, i % 2 == 1, f"after-{i}")
        assert status == 200
        acknowledged.append(f"after-{i}")
    # Reads use a pool without pre-ping (one round trip less per decision): its connections died
    # with the server; the read path notices, renews the pool and retries once, so no read fails.
    reads = [client.get(f"/api/v1/members/{MEMBER}/settings", headers=headers).status_code for _ in range(3)]
    assert reads == [200, 200, 200], reads
    stored = _stored_keys(ledger)
    assert {f"api:setting:{MEMBER}:{k}" for k in acknowledged} <= stored
    assert not any(":during-" in k for k in stored)  # nothing answered 503 was stored
    assert ledger.verify().ok
    ledger.close()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> int:
    """A one-second busy timeout instead of thirty: the behaviour is the same, the test shorter."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 1000)
    return 1000


def test_a_sqlite_file_locked_by_another_process_gets_503_and_nothing_half_written(
    tmp_path: Path, short_busy_timeout: int
) -> None:
    path = tmp_path / "ledger.db"
    client, ledger, headers = _portal(f"sqlite:///{path}")
    assert _put(client, headers, False, "first")[0] == 200
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock past the busy timeout
    try:
        status, answer_headers = _put(client, headers, True, "locked")
    finally:
        holder.rollback()
        holder.close()
    assert status == 503 and answer_headers.get("retry-after") == "5"
    assert _put(client, headers, True, "after")[0] == 200
    stored = _stored_keys(ledger)
    assert f"api:setting:{MEMBER}:after" in stored and f"api:setting:{MEMBER}:locked" not in stored
    assert ledger.verify().ok
    ledger.close()


def test_writes_queued_behind_a_lock_are_answered_503_together_not_one_busy_timeout_each(
    tmp_path: Path, short_busy_timeout: int
) -> None:
    """Found by bench/outage.py: a batch that failed on the lock was retried request by request, each
    waiting out the busy timeout again, so 16 queued writes waited 16 timeouts. The database refusing
    is the same answer for the whole batch and for everyone queued behind it."""
    path = tmp_path / "ledger.db"
    client, ledger, headers = _portal(f"sqlite:///{path}")
    assert _put(client, headers, False, "first")[0] == 200
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    writers = 12
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(writers) as pool:
            answers = list(pool.map(lambda i: _put(client, headers, True, f"queued-{i}"), range(writers)))
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert [status for status, _ in answers] == [503] * writers
    # The requests queued behind a refused one get its answer at once: one busy timeout in all.
    # Retried one by one, a batch took a timeout per request (12 s here).
    assert waited < 1.9 * short_busy_timeout / 1000, waited
    stored = _stored_keys(ledger)
    assert not any(":queued-" in key for key in stored)
    assert _put(client, headers, True, "after")[0] == 200
    ledger.close()
