"""The portal as `consentgate serve` runs it (uvicorn in its own process): proxies, headers, body limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import cg, free_port, running

PASSWORD = "correct horse battery"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    db = f"sqlite:///{tmp_path / 'portal.db'}"
    assert cg(db, "init", cwd=tmp_path).returncode == 0
    members = tmp_path / "members.csv"
    members.write_text("member_id,country,birth_date,believed_minor\n1001,DE,1985-03-03,\n")
    assert cg(db, "members", "import", str(members), cwd=tmp_path).returncode == 0
    made = cg(
        db, "account", "create", "anna", "--member", "1001", "--password-env", "PW", cwd=tmp_path, PW=PASSWORD
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["--db", db, "serve", "--port", str(port), "--max-body", "65536"]
    with running(args, cwd=tmp_path, ready=f"{base}/login"):
        yield base


def _csrf(client: httpx.Client) -> str:
    page = client.get("/login").text
    marker = 'name="csrf_token" value="'
    return page[page.index(marker) + len(marker) :].split('"', 1)[0]


def test_rotating_x_forwarded_for_does_not_reset_the_login_limit(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        token = _csrf(client)
        answers = [
            client.post(
                "/login",
                data={"username": "anna", "password": "wrong-password", "csrf_token": token},
                headers={"x-forwarded-for": f"203.0.113.{i}"},
            ).status_code
            for i in range(7)
        ]
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429], answers


def test_no_server_header_and_a_body_limit_on_every_route(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        page = client.get("/login")
        assert "server" not in page.headers and page.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in page.headers  # not promised over plain HTTP
        token = _csrf(client)
        big = client.post("/login", data={"username": "anna", "password": "x" * 70_000, "csrf_token": token})
        assert big.status_code == 413 and "65,536 bytes" in big.text
        api = client.post(
            "/api/v1/decisions",
            content=b"{" + b" " * 70_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert api.status_code == 413 and api.headers["content-type"] == "application/problem+json"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b"x" * 8192

        chunked = client.post(
            "/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert chunked.status_code == 413
