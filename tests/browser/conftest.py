"""Browser tests: the portal served by uvicorn on loopback, driven by Debian's Chromium via Playwright.

Chromium (``/usr/bin/chromium``, or ``CONSENTGATE_CHROMIUM``) and axe-core (from npm, installed by
``scripts/test`` under ``.cache/npm``, or ``CONSENTGATE_AXE``) are required: when either is missing
these tests fail rather than skip, so a green run always means the browser really ran.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi.staticfiles import StaticFiles
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.types import ASGIApp

from consentgate.ledger.store import Ledger
from consentgate.web import PortalConfig, create_app
from consentgate.web import accounts as accounts_module
from consentgate.web.accounts import AccountStore, Role
from tests.conftest import register

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CONSENTGATE_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(os.environ.get("CONSENTGATE_AXE", ROOT / ".cache/npm/node_modules/axe-core/axe.min.js"))
ARTIFACTS = Path(os.environ.get("CONSENTGATE_ARTIFACTS", ROOT / "test-artifacts"))
PASSWORD = "correct horse battery"


@dataclass
class LivePortal:
    url: str
    ledger: Ledger


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest profile: hashing at production cost would dominate the run time."""
    monkeypatch.setattr(accounts_module, "hasher", PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture
def live_portal(tmp_path: Path) -> Iterator[LivePortal]:
    """A fresh SQLite ledger with members anna (1001, DE) and james (1004, US), a DPO, served on loopback."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE}: run scripts/test (it installs axe-core from npm)")
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'portal.db'}", initialise=True)
    register(ledger, 1001, "DE", registered_at="2015-01-01T00:00:00Z")
    register(ledger, 1004, "US", registered_at="2015-01-01T00:00:00Z")
    store = AccountStore(ledger)
    store.create_account(username="anna", password=PASSWORD, role=Role.member, member_id=1001)
    store.create_account(username="james", password=PASSWORD, role=Role.member, member_id=1004)
    store.create_account(username="dpo", password=PASSWORD, role=Role.dpo)
    app = create_app(PortalConfig(db="(browser test)", secret_key="browser-test-secret"), ledger=ledger)
    # axe-core is served from the same origin, so the page's CSP (script-src 'self') allows it unchanged.
    app.mount("/test-assets", StaticFiles(directory=str(AXE.parent)), name="test-assets")
    with serve_in_thread(app) as url:
        yield LivePortal(url, ledger)
    ledger.close()


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn on loopback in a thread until the block ends; yields its URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an asyncio loop
    running in the worker's main thread while it lives, which breaks ``asyncio.run`` in other tests
    that the same xdist worker runs later."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run scripts/test (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def log_out(page: Page) -> None:
    page.click("form.logout button[type=submit]")
    page.wait_for_load_state()


def axe_violations(page: Page) -> list[dict[str, object]]:
    """Serious and critical axe-core violations on the current page."""
    page.add_script_tag(url="/test-assets/axe.min.js")
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
