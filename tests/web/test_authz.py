"""The authorisation matrix: every route × every kind of caller → the expected status.

The table below names every route of the application; a route added without a row fails the test,
so nobody can add a page or an endpoint without deciding who may use it. Callers: anonymous, member
A (1001, Germany), member B (1004, United States), the DPO, a token with the route's scope and a
token with every scope but that one. Member-data routes are called with member A's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from consentgate.ledger.events import EventDraft, EventKind, Source
from consentgate.ledger.store import Ledger
from consentgate.objections import file_objection
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.taxonomy import Taxonomy
from consentgate.web.accounts import AccountStore, Scope
from tests.conftest import NOW
from tests.web.conftest import MEMBER_A, MEMBER_B, client_for

CALLERS = ("anonymous", "member_b", "token_without", "token_with", "member_a", "dpo")
LOGIN = "login"  # 303 to /login: the page asks an anonymous caller to log in
SNAPSHOT = "genai.training-2025-11-04-abcdef123456"
MODEL = "genai-2025-11"
TRAINED_AT = (NOW - timedelta(days=1)).isoformat()


def _everyone(status: int | str) -> dict[str, int | str]:
    return dict.fromkeys(CALLERS, status)


def _member_page(a: int | str = 200, b: int | str = 200) -> dict[str, int | str]:
    return {
        "anonymous": LOGIN,
        "member_b": b,
        "token_without": 403,
        "token_with": 403,
        "member_a": a,
        "dpo": 403,
    }


def _console(ok: int = 200) -> dict[str, int | str]:
    return {
        "anonymous": LOGIN,
        "member_b": 403,
        "token_without": 403,
        "token_with": 403,
        "member_a": 403,
        "dpo": ok,
    }


def _api(ok: int = 200, *, member_self: bool) -> dict[str, int | str]:
    return {
        "anonymous": 401,
        "member_b": 403,
        "token_without": 403,
        "token_with": ok,
        "member_a": ok if member_self else 403,
        "dpo": ok,
    }


@dataclass(frozen=True)
class Row:
    path: str
    """The concrete path called (path parameters filled in with member A's data)."""
    expected: dict[str, int | str]
    scope: Scope | None = None
    form: dict[str, str | list[str]] | None = None
    json: object = None


def _table(refs: dict[str, str]) -> dict[tuple[str, str], Row]:
    a = MEMBER_A
    return {
        ("GET", "/"): Row("/", {**_everyone(LOGIN), "member_a": 303, "member_b": 303, "dpo": 303}),
        ("GET", "/login"): Row("/login", _everyone(200)),
        ("POST", "/login"): Row("/login", _everyone(401), form={"username": "x", "password": "y"}),
        ("POST", "/logout"): Row("/logout", _everyone(LOGIN)),
        ("POST", "/language"): Row("/language", _everyone(303), form={"language": "de", "next": "/"}),
        ("GET", "/settings"): Row("/settings", _member_page()),
        ("GET", "/settings/none"): Row("/settings/none", _member_page()),
        ("POST", "/settings/none"): Row("/settings/none", _member_page(303, 303)),
        ("POST", "/settings/{key}"): Row(
            "/settings/genai_improvement", _member_page(303, 303), form={"value": "off"}
        ),
        ("GET", "/notice"): Row("/notice", _member_page(303, 303)),
        ("POST", "/notice"): Row("/notice", _member_page(303, 303), form={"policy": "linkedin-2025-11@2"}),
        ("GET", "/data"): Row("/data", _member_page()),
        # A snapshot without the member's data looks like an unknown one (404): ids cannot be probed.
        ("GET", "/data/snapshots/{snapshot_id}"): Row(f"/data/snapshots/{SNAPSHOT}", _member_page(200, 404)),
        ("GET", "/objections"): Row("/objections", _member_page()),
        # Member B is in the US: no purpose there rests on legitimate interest, so nothing to object to.
        ("POST", "/objections"): Row(
            "/objections", _member_page(303, 400), form={"purposes": ["ml.non_generative"]}
        ),
        # Another member's reference looks like an unknown one (404), so references cannot be probed.
        ("GET", "/objections/{reference}"): Row(f"/objections/{refs['a']}", _member_page(200, 404)),
        ("GET", "/console"): Row("/console", _console()),
        ("GET", "/console/objections/{reference}"): Row(f"/console/objections/{refs['a']}", _console()),
        ("POST", "/console/objections/{reference}/decide"): Row(
            f"/console/objections/{refs['decide']}/decide",
            _console(303),
            form={"outcome": "uphold", "reason": "ok"},
        ),
        ("POST", "/console/objections/{reference}/extend"): Row(
            f"/console/objections/{refs['extend']}/extend",
            _console(303),
            form={"months": "1", "reason": "many"},
        ),
        ("GET", "/console/snapshots/{snapshot_id}/debt"): Row(
            f"/console/snapshots/{SNAPSHOT}/debt", _console()
        ),
        ("GET", "/console/models/{name}/debt"): Row(f"/console/models/{MODEL}/debt", _console()),
        ("GET", "/api/v1/openapi.json"): Row("/api/v1/openapi.json", _everyone(200)),
        ("GET", "/api/v1/members/{member_id}/settings"): Row(
            f"/api/v1/members/{a}/settings", _api(member_self=True), Scope.settings_read
        ),
        ("PUT", "/api/v1/members/{member_id}/settings/{key}"): Row(
            f"/api/v1/members/{a}/settings/genai_improvement",
            _api(member_self=True),
            Scope.settings_write,
            json={"value": False},
        ),
        ("GET", "/api/v1/decisions"): Row(
            f"/api/v1/decisions?member_id={a}&category=profile.skills&purpose=genai.training",
            _api(member_self=False),
            Scope.decisions_read,
        ),
        ("POST", "/api/v1/decisions"): Row(
            "/api/v1/decisions",
            _api(member_self=False),
            Scope.decisions_read,
            json={"requests": [{"member_id": a, "category": "profile.skills", "purpose": "genai.training"}]},
        ),
        ("GET", "/api/v1/members/{member_id}/objections"): Row(
            f"/api/v1/members/{a}/objections", _api(member_self=True), Scope.objections_read
        ),
        ("POST", "/api/v1/members/{member_id}/objections"): Row(
            f"/api/v1/members/{a}/objections",
            _api(201, member_self=True),
            Scope.objections_write,
            json={"purposes": ["ml.non_generative"], "grounds": ""},
        ),
        ("GET", "/api/v1/objections/{reference}"): Row(
            f"/api/v1/objections/{refs['a']}", _api(member_self=True), Scope.objections_read
        ),
        ("GET", "/api/v1/objections"): Row(
            "/api/v1/objections", _api(member_self=False), Scope.objections_read
        ),
        ("GET", "/api/v1/snapshots"): Row("/api/v1/snapshots", _api(member_self=False), Scope.lineage_read),
        ("GET", "/api/v1/snapshots/{snapshot_id}"): Row(
            f"/api/v1/snapshots/{SNAPSHOT}", _api(member_self=False), Scope.lineage_read
        ),
        ("GET", "/api/v1/members/{member_id}/lineage"): Row(
            f"/api/v1/members/{a}/lineage", _api(member_self=True), Scope.lineage_read
        ),
        ("GET", "/api/v1/snapshots/{snapshot_id}/members/{member_id}"): Row(
            f"/api/v1/snapshots/{SNAPSHOT}/members/{a}", _api(member_self=True), Scope.lineage_read
        ),
        ("GET", "/api/v1/models"): Row("/api/v1/models", _api(member_self=False), Scope.lineage_read),
        ("POST", "/api/v1/models"): Row(
            "/api/v1/models",
            _api(201, member_self=False),
            Scope.models_write,
            # Trained before the rows above switch member A's setting off (which puts A in debt).
            json={"name": "authz-model", "snapshots": [SNAPSHOT], "trained_at": TRAINED_AT},
        ),
    }


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)  # FastAPI wraps included routers
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, APIRoute):
            out |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
        elif getattr(route, "path", "") == "/api/v1/openapi.json":
            out.add(("GET", "/api/v1/openapi.json"))
    return out


@pytest.fixture
def world(
    portal_ledger: Ledger, taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Objections of member A, both members past the policy notice, a snapshot and a model."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the event mirror of a PostgreSQL ledger
    refs = {
        name: file_objection(
            portal_ledger, taxonomy, member_id=MEMBER_A, purposes=["ml.non_generative"], at=None
        )[0].reference
        for name in ("a", "decide", "extend")
    }
    portal_ledger.append(
        [
            EventDraft(
                m,
                EventKind.notice_acknowledged,
                "linkedin-2025-11@2",
                "acknowledged",
                None,
                Source.member,
                "t",
                f"n{m}",
            )
            for m in (MEMBER_A, MEMBER_B)
        ]
    )
    folder = tmp_path / "snap"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {"member_id": pa.array([MEMBER_A], pa.int64()), "category": ["content.posts"], "records": [1]}
        ),
        folder / "members.parquet",
    )
    (folder / "manifest.json").write_text('{"governing_settings": ["genai_improvement"]}', encoding="utf-8")
    registry = Registry(portal_ledger)
    registry.register(
        SnapshotEntry(
            SNAPSHOT,
            "snapshot",
            "genai.training",
            NOW - timedelta(days=300),
            1,
            None,
            "duckdb",
            1,
            1,
            "0" * 64,
            folder,
            NOW,
        ),
        publish=lambda _conn: None,
    )
    registry.register_model(MODEL, [SNAPSHOT], at=NOW)
    return refs


def _caller(app: FastAPI, ledger: Ledger, who: str, scope: Scope | None) -> tuple[TestClient, dict[str, str]]:
    """A client and the headers it sends: a session (with its CSRF token) or a bearer token."""
    store = AccountStore(ledger)
    if who.startswith("token"):
        scopes = frozenset(Scope) if scope is None else frozenset({scope})
        if who == "token_without":
            scopes = frozenset(Scope) - ({scope} if scope else set())
            if not scopes or scope is None:
                scopes = frozenset({Scope.lineage_read})
        _, secret = store.create_token(name=who, scopes=scopes)
        return TestClient(app), {"Authorization": f"Bearer {secret}"}
    username = {"anonymous": None, "member_a": "anna", "member_b": "james", "dpo": "dpo"}[who]
    client, csrf = client_for(app, username)
    return client, {"X-CSRF-Token": csrf}


def _status(response_status: int, location: str | None) -> int | str:
    if response_status == 303 and location and location.startswith("/login"):
        return LOGIN
    return response_status


def test_every_route_has_a_row(app: FastAPI, world: dict[str, str]) -> None:
    assert _routes(app) == set(_table(world)), "add the new route to the authorisation matrix"


@pytest.mark.parametrize("who", CALLERS)
def test_authorisation_matrix(app: FastAPI, portal_ledger: Ledger, world: dict[str, str], who: str) -> None:
    problems: list[str] = []
    for (method, template), row in _table(world).items():
        client, headers = _caller(app, portal_ledger, who, row.scope)
        form: dict[str, str | list[str]] | None = row.form
        if method != "GET" and "X-CSRF-Token" in headers:
            form = {**(row.form or {}), "csrf_token": headers["X-CSRF-Token"]}
        response = client.request(
            method,
            row.path,
            headers=headers,
            data=form if row.json is None else None,
            json=row.json,
            follow_redirects=False,
        )
        got = _status(response.status_code, response.headers.get("location"))
        if got != row.expected[who]:
            problems.append(
                f"{method} {template}: expected {row.expected[who]}, got {got} ({response.text[:120]!r})"
            )
    assert problems == []


@pytest.mark.parametrize("csrf", [None, "wrong-token"])
def test_a_missing_or_wrong_csrf_token_is_refused_everywhere(
    app: FastAPI, world: dict[str, str], csrf: str | None
) -> None:
    """Every state-changing route, called by a logged-in session without the right token → 403."""
    for who in ("member_a", "dpo", "anonymous"):
        client, _ = client_for(app, {"member_a": "anna", "dpo": "dpo", "anonymous": None}[who])
        for (method, template), row in _table(world).items():
            if method == "GET" or template == "/api/v1/decisions":
                continue  # reading decisions in a batch changes nothing, so it is no CSRF target
            form = dict(row.form or {})
            headers: dict[str, str] = {}
            if csrf is not None:
                form["csrf_token"] = csrf
                headers["X-CSRF-Token"] = csrf
            response = client.request(
                method,
                row.path,
                data=form if row.json is None else None,
                json=row.json,
                headers=headers,
                follow_redirects=False,
            )
            assert response.status_code == 403, f"{who} {method} {template}: {response.status_code}"
            assert re.search("CSRF", response.text), template
