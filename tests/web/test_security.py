"""Login, sessions, CSRF, security headers, rate limiting and the single-sign-on header mode."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.ledger.store import Ledger
from consentgate.web import PortalConfig, create_app
from consentgate.web.accounts import AccountStore, Role
from tests.helpers import free_port
from tests.web.conftest import PASSWORD, csrf_of, login


def test_login_sets_a_signed_httponly_samesite_cookie_and_a_fresh_session(client: TestClient) -> None:
    before = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": "anna", "password": PASSWORD, "csrf_token": before},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/settings"
    cookie = response.headers["set-cookie"].lower()
    assert "consentgate_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert csrf_of(client) != before, "the CSRF token of the anonymous session does not survive login"


def test_a_forged_session_cookie_is_anonymous(client: TestClient) -> None:
    login(client, "anna")
    value = client.cookies["consentgate_session"]
    client.cookies.clear()
    client.cookies.set("consentgate_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    response = client.get("/settings", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient) -> None:
    token = csrf_of(client)
    wrong = client.post("/login", data={"username": "anna", "password": "nope-nope", "csrf_token": token})
    unknown = client.post("/login", data={"username": "zed", "password": "nope-nope", "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password." in wrong.text and "Wrong username or password." in unknown.text


def test_login_is_rate_limited_per_client_and_username(client: TestClient) -> None:
    token = csrf_of(client)
    for _ in range(5):
        client.post("/login", data={"username": "anna", "password": "wrong-password", "csrf_token": token})
    blocked = client.post("/login", data={"username": "anna", "password": PASSWORD, "csrf_token": token})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "Too many failed attempts" in blocked.text
    # Another username is not locked out by someone guessing anna's password.
    assert login(client, "james")


def test_every_form_post_needs_the_session_csrf_token(client: TestClient) -> None:
    token = login(client, "anna")
    for path, data in (
        ("/settings/genai_improvement", {"value": "off"}),
        ("/settings/none", {}),
        ("/objections", {"purposes": "ml.non_generative"}),
        ("/language", {"language": "de"}),
        ("/logout", {}),
    ):
        assert client.post(path, data=data, follow_redirects=False).status_code == 403, path
        wrong = {**data, "csrf_token": token[:-2] + "xx"}
        assert client.post(path, data=wrong, follow_redirects=False).status_code == 403, path
    ok = client.post(
        "/settings/genai_improvement", data={"value": "off", "csrf_token": token}, follow_redirects=False
    )
    assert ok.status_code == 303


def test_security_headers_and_no_inline_script(client: TestClient) -> None:
    login(client, "anna")
    for path in ("/login", "/notice", "/settings", "/data", "/objections", "/api/v1/openapi.json"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        if response.headers["content-type"].startswith("text/html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), f"inline script on {path}"
            assert " style=" not in response.text and "<style" not in response.text, path


def test_next_parameter_cannot_redirect_off_site(client: TestClient) -> None:
    token = csrf_of(client)
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post(
            "/login",
            data={"username": "anna", "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/settings", target
        client.cookies.clear()
        token = csrf_of(client)


def _sso_app(ledger: Ledger, proxies: tuple[str, ...]) -> FastAPI:
    config = PortalConfig(
        db="(test)", secret_key="k", trusted_header="X-Forwarded-User", trusted_proxies=proxies
    )
    return create_app(config, ledger=ledger)


def test_trusted_header_mode_is_off_by_default(client: TestClient) -> None:
    response = client.get("/settings", headers={"X-Forwarded-User": "anna"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_trusted_header_mode_accepts_the_proxy_only(portal_ledger: Ledger) -> None:
    # TestClient connects from "testclient", which is no IP address: never a trusted proxy.
    with TestClient(_sso_app(portal_ledger, ("0.0.0.0/0",))) as outsider:
        assert outsider.get("/settings", headers={"X-Forwarded-User": "anna"}).status_code == 403
    with TestClient(_sso_app(portal_ledger, ("0.0.0.0/0",)), client=("10.1.2.3", 5000)) as proxied:
        page = proxied.get("/notice", headers={"X-Forwarded-User": "anna"})
        assert page.status_code == 200 and "What has changed" in page.text
        # Behind a cookie-based SSO proxy the browser sends the proxy's cookie on a cross-site form
        # post too: a form without this session's CSRF token is refused (issue 12).
        forged = proxied.post(
            "/settings/genai_improvement",
            data={"value": "off"},
            headers={"X-Forwarded-User": "anna"},
            follow_redirects=False,
        )
        assert forged.status_code == 403
        settings_page = proxied.get("/settings", headers={"X-Forwarded-User": "anna"}).text
        found = re.search(r'name="csrf_token" value="([^"]+)"', settings_page)
        assert found is not None
        token = found.group(1)
        changed = proxied.post(
            "/settings/genai_improvement",
            data={"value": "off", "csrf_token": token},
            headers={"X-Forwarded-User": "anna"},
            follow_redirects=False,
        )
        assert changed.status_code == 303
        assert proxied.get("/settings", headers={"X-Forwarded-User": "nobody"}).status_code == 403
    with TestClient(_sso_app(portal_ledger, ("192.168.0.0/16",)), client=("10.1.2.3", 5000)) as spoofed:
        assert spoofed.get("/settings", headers={"X-Forwarded-User": "dpo"}).status_code == 403
    assert AccountStore(portal_ledger).get("anna") is not None


def test_a_cookie_copied_before_logout_no_longer_works(app: FastAPI) -> None:
    browser = TestClient(app)
    token = login(browser, "anna")
    copied = dict(browser.cookies)
    assert browser.get("/settings").status_code == 200
    assert browser.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    thief = TestClient(app, cookies=copied)
    answer = thief.get("/settings", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert thief.get("/api/v1/members/1001/settings").status_code == 401
    # Logging in again works, with a new session.
    assert login(browser, "anna") and browser.get("/settings").status_code == 200


def test_a_new_password_or_disabling_ends_every_session(app: FastAPI, portal_ledger: Ledger) -> None:
    store = AccountStore(portal_ledger)
    first = TestClient(app)
    login(first, "anna")
    second = TestClient(app)
    login(second, "anna")
    store.set_password("anna", "a new long password")
    for browser in (first, second):
        assert browser.get("/settings", follow_redirects=False).status_code == 303
    assert login(first, "anna", "a new long password")
    store.disable("james")
    james = TestClient(app)
    token = csrf_of(james)
    refused = james.post("/login", data={"username": "james", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 401
    store.enable("james")
    assert login(james, "james")


def test_the_login_limit_is_shared_by_every_process_on_the_ledger(portal_ledger: Ledger) -> None:
    """Two apps on one database (as two workers or two servers are) count the same attempts."""
    first = TestClient(create_app(PortalConfig(db="(a)", secret_key="k"), ledger=portal_ledger))
    second = TestClient(create_app(PortalConfig(db="(b)", secret_key="k"), ledger=portal_ledger))
    answers = []
    for attempt in range(7):
        browser = first if attempt % 2 == 0 else second
        token = csrf_of(browser)
        answers.append(
            browser.post(
                "/login", data={"username": "anna", "password": "wrong-password", "csrf_token": token}
            ).status_code
        )
    assert answers == [401] * 5 + [429, 429], answers


REDIS = os.environ.get("CONSENTGATE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def test_the_login_limit_kept_in_redis_is_shared_by_servers_on_different_ledgers(
    portal_ledger: Ledger, tmp_path: Path
) -> None:
    """With --rate-limit-store, two servers that do not even share a database count the same attempts
    (the local Redis, as in production; CI fails without it, like without PostgreSQL)."""
    other = Ledger.open(f"sqlite:///{tmp_path / 'other.db'}", initialise=True)
    username = f"redis-{uuid.uuid4().hex[:8]}"
    for ledger in (portal_ledger, other):
        AccountStore(ledger).create_account(username=username, password=PASSWORD, role=Role.dpo)
    config = PortalConfig(db="(redis)", secret_key="k", rate_limit_store=REDIS, login_attempts=3)
    first = TestClient(create_app(config, ledger=portal_ledger))
    second = TestClient(create_app(config, ledger=other))
    answers = []
    for attempt in range(5):
        browser = first if attempt % 2 == 0 else second
        data = {"username": username, "password": "wrong-password", "csrf_token": csrf_of(browser)}
        answers.append(browser.post("/login", data=data).status_code)
    assert answers == [401] * 3 + [429, 429], answers
    right = {"username": username, "password": PASSWORD, "csrf_token": csrf_of(second)}
    assert second.post("/login", data=right).status_code == 429  # even the right password waits
    other.close()


def test_a_rate_limit_store_that_does_not_answer_refuses_the_login_with_503(portal_ledger: Ledger) -> None:
    """Fail closed: no store, no guesses (503 with Retry-After), never an unlimited login."""
    config = PortalConfig(db="(redis)", secret_key="k", rate_limit_store=f"redis://127.0.0.1:{free_port()}/0")
    browser = TestClient(create_app(config, ledger=portal_ledger))
    data = {"username": "anna", "password": PASSWORD, "csrf_token": csrf_of(browser)}
    answer = browser.post("/login", data=data, follow_redirects=False)
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert "the login rate-limit store is not reachable" in answer.text
