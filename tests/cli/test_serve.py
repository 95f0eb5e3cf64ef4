"""``consentgate account create`` and ``consentgate serve``, run as real subprocesses on a SQLite file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import MEMBERS_CSV
from tests.helpers import cg, cli_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_account_create_then_serve_lets_the_member_log_in(tmp_path: Path, workers: int) -> None:
    """With two workers, the session set by one process is honoured by the other (a shared key)."""
    db = f"sqlite:///{tmp_path / 'cg.db'}"
    (tmp_path / "members.csv").write_text(MEMBERS_CSV, encoding="utf-8")
    assert cg(db, "init", cwd=tmp_path).returncode == 0
    assert cg(db, "members", "import", "members.csv", cwd=tmp_path).returncode == 0
    created = cg(
        db,
        "account",
        "create",
        "Anna",
        "--member",
        "1",
        "--password-env",
        "PW",
        cwd=tmp_path,
        PW="s3cret-pass",
    )
    assert created.returncode == 0, created.stderr
    assert "created member login 'anna' for member 1" in created.stdout
    unknown = cg(
        db, "account", "create", "x", "--member", "99", "--password-env", "PW", cwd=tmp_path, PW="s3cret-pass"
    )
    assert unknown.returncode == 2 and "member 99 is not in the ledger" in unknown.stderr
    twice = cg(
        db, "account", "create", "anna", "--dpo", "--password-env", "PW", cwd=tmp_path, PW="s3cret-pass"
    )
    assert twice.returncode == 2 and "already exists" in twice.stderr
    listed = cg(db, "account", "list", "--json", cwd=tmp_path)
    assert '"username": "anna"' in listed.stdout and "argon2" not in listed.stdout

    port = _free_port()
    key = tmp_path / "session.key"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consentgate",
            "--db",
            db,
            "serve",
            "--port",
            str(port),
            "--secret-file",
            str(key),
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"{base}/login", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve did not answer within 60 s"
                time.sleep(0.2)
        assert page.status_code == 200 and "content-security-policy" in page.headers
        assert key.stat().st_mode & 0o077 == 0, "the session key file is private"
        with httpx.Client(base_url=base) as browser:
            form = browser.get("/login").text
            token = form.split('name="csrf_token" value="')[1].split('"')[0]
            login = browser.post(
                "/login", data={"username": "anna", "password": "s3cret-pass", "csrf_token": token}
            )
            assert login.status_code == 303 and login.headers["location"] == "/settings"
            for _ in range(6):  # several requests, so both workers answer some
                assert browser.get("/notice").status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=20)
