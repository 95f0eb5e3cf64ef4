"""An unexpected failure in the portal is a page or a problem document with a reference, never a bare 500."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.web.app import CSP


@pytest.fixture
def failing(app: FastAPI) -> TestClient:
    """The real portal with one route that fails the way a bug would (and one in the API)."""

    @app.get("/broken")
    def broken() -> None:
        raise RuntimeError("a bug in a page")

    @app.get("/api/v1/broken")
    def broken_api() -> None:
        raise RuntimeError("a bug in the API")

    return TestClient(app, raise_server_exceptions=False)


def test_a_page_failure_is_a_page_with_the_security_headers_and_a_logged_reference(
    failing: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="consentgate.web"):
        answer = failing.get("/broken", headers={"accept-language": "de"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    reference = answer.headers["x-consentgate-reference"]
    assert f'<code id="reference">{reference}</code>' in answer.text
    assert '<html lang="de">' in answer.text and "Etwas ist schiefgegangen" in answer.text
    assert "Traceback" not in answer.text and "a bug in a page" not in answer.text
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_an_api_failure_is_a_problem_document(failing: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="consentgate.web"):
        answer = failing.get("/api/v1/broken")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == 500 and body["reference"] == answer.headers["x-consentgate-reference"]
    assert body["reference"] in body["detail"] and "a bug" not in body["detail"]
    assert answer.headers["content-security-policy"] == CSP
    assert any(body["reference"] in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("receipt", ["²", "1" * 5000, "-1", "1,,²,3", "9" * 19, ",".join(["1"] * 10_000)])
def test_odd_receipt_parameters_show_the_page(client: TestClient, receipt: str) -> None:
    from tests.web.conftest import login

    login(client, "anna")
    answer = client.get("/settings", params={"receipt": receipt})
    assert answer.status_code == 200 and 'id="receipt"' not in answer.text


def test_a_nul_in_the_objection_form_s_grounds_is_refused_on_the_form(client: TestClient) -> None:
    from tests.web.conftest import login

    csrf = login(client, "anna")
    answer = client.post(
        "/objections",
        data={"csrf_token": csrf, "purposes": "ml.non_generative", "grounds": "I object\x00 to this"},
        follow_redirects=False,
    )
    assert answer.status_code == 400 and "control character" in answer.text
    assert client.get("/objections").text.count("/objections/OBJ-") == 0


def test_hsts_is_sent_when_cookies_are_secure(portal_ledger: object) -> None:
    from consentgate.web import PortalConfig, create_app

    secure = create_app(PortalConfig(db="(t)", secret_key="k", secure_cookies=True), ledger=portal_ledger)  # type: ignore[arg-type]
    answer = TestClient(secure, base_url="https://testserver").get("/login")
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_a_full_database_is_507_not_500(app: FastAPI) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    @app.put("/api/v1/full")
    def full() -> None:
        raise OperationalError("INSERT …", {}, sqlite3.OperationalError("database or disk is full"))

    answer = TestClient(app, raise_server_exceptions=False).put("/api/v1/full")
    assert answer.status_code == 507 and answer.json()["title"] == "Insufficient Storage"
    assert "nothing was stored" in answer.json()["detail"]
