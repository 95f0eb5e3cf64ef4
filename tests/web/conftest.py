"""Portal fixtures: the app on a real ledger (SQLite and PostgreSQL), accounts, tokens, logged-in clients.

Member A is 1001 (Germany), member B is 1004 (United States); ``dpo`` has the DPO role. Everyone's
password is ``PASSWORD``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.web import PortalConfig, create_app
from consentgate.web import accounts as accounts_module
from consentgate.web.accounts import AccountStore, Role, Scope
from tests.conftest import at, register

PASSWORD = "correct horse battery"
MEMBER_A = 1001
MEMBER_B = 1004
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CATEGORIES = ("profile.skills", "content.posts", "content.posts", "messages.private")
"""Each member's records in ``build_genai_snapshot``: two kinds allowed, one never used for AI."""


@dataclass
class Tokens:
    """Bearer secrets: ``full`` has every scope, ``none_`` has a scope no route accepts alone."""

    full: str
    by_scope: dict[Scope, str]


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest profile: hashing at production cost would dominate the run time."""
    monkeypatch.setattr(accounts_module, "hasher", PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture
def portal_ledger(ledger: Ledger) -> Ledger:
    register(ledger, MEMBER_A, "DE", registered_at="2015-01-01T00:00:00Z")
    register(ledger, MEMBER_B, "US", registered_at="2015-01-01T00:00:00Z")
    store = AccountStore(ledger)
    store.create_account(username="anna", password=PASSWORD, role=Role.member, member_id=MEMBER_A)
    store.create_account(username="james", password=PASSWORD, role=Role.member, member_id=MEMBER_B)
    store.create_account(username="dpo", password=PASSWORD, role=Role.dpo)
    return ledger


@pytest.fixture
def app(portal_ledger: Ledger) -> FastAPI:
    return create_app(PortalConfig(db="(test ledger)", secret_key="test-secret"), ledger=portal_ledger)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def tokens(portal_ledger: Ledger) -> Tokens:
    store = AccountStore(portal_ledger)
    _, full = store.create_token(name="full", scopes=frozenset(Scope))
    by_scope = {scope: store.create_token(name=scope.value, scopes=frozenset({scope}))[1] for scope in Scope}
    return Tokens(full, by_scope)


def csrf_of(client: TestClient, path: str = "/login") -> str:
    """The session's CSRF token, read from a page's hidden form field."""
    page = client.get(path)
    match = _CSRF.search(page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``client`` in; returns the CSRF token of the new session."""
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client)


def client_for(app: FastAPI, username: str | None) -> tuple[TestClient, str]:
    """A new client, logged in as ``username`` (None: anonymous), and its CSRF token."""
    test_client = TestClient(app)
    token = login(test_client, username) if username else csrf_of(test_client)
    return test_client, token


def build_genai_snapshot(
    ledger: Ledger,
    engine: DecisionEngine,
    root: Path,
    members: Sequence[int],
    *,
    as_of: str = "2025-11-04T00:00:00Z",
    out: Path | str | None = None,
) -> BuildResult:
    """A real genai.training snapshot of ``members``' records (``CATEGORIES`` each), built into ``root``
    (or ``out``: a folder or a store URI)."""
    records = root / "net" / "records"
    records.mkdir(parents=True)
    owners = [m for m in members for _ in CATEGORIES]
    pq.write_table(
        pa.table(
            {
                "record_id": pa.array(range(1, len(owners) + 1), pa.int64()),
                "member_id": pa.array(owners, pa.int64()),
                "category": [c for _ in members for c in CATEGORIES],
                "created_at": pa.array(
                    [datetime(2025, 1, 1, tzinfo=UTC)] * len(owners), pa.timestamp("us", tz="UTC")
                ),
                "payload": [f"p{i}" for i in range(len(owners))],
            }
        ),
        records / "part-0.parquet",
    )
    request = BuildRequest(
        data=root / "net",
        purpose="genai.training",
        as_of=at(as_of),
        out=root / "out" if out is None else out,
        events_dir=root / "events",
    )
    return build_snapshot(request, ledger=ledger, engine=engine)
