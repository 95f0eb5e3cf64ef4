"""Property-based tests of the JSON API against its own OpenAPI document (schemathesis).

Runs on SQLite only (its own fixture, not the parametrised ledger) to stay fast; the behaviour on
PostgreSQL is covered by test_api.py. Every generated request is sent with a bearer token that has
every scope, so the cases reach the routes' logic rather than stopping at 401/403.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consentgate.ledger.store import Ledger
from consentgate.web import PortalConfig, create_app
from consentgate.web.accounts import AccountStore, Scope
from tests.conftest import FixedClock, register
from tests.web.conftest import MEMBER_A, MEMBER_B


@pytest.fixture(scope="module")
def sqlite_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{db}", clock=FixedClock(), initialise=True)
    register(ledger, MEMBER_A, "DE")
    register(ledger, MEMBER_B, "US")
    _, secret = AccountStore(ledger).create_token(name="schemathesis", scopes=frozenset(Scope))
    yield create_app(PortalConfig(db=str(db), secret_key="test-secret"), ledger=ledger), secret
    ledger.close()


def _document_app() -> FastAPI:
    """The application, only to read its OpenAPI document at import time (no request reaches its ledger).

    ``schemathesis.pytest.from_fixture`` would load the document from a fixture, but it does not work
    with pytest 9 (it sets ``Node._nodeid``); each call below is sent to the fixture's app instead.
    """
    return create_app(PortalConfig(db="(document only)"), ledger=cast(Ledger, object()))


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _document_app())

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_document(
    case: schemathesis.Case[Any], sqlite_portal: tuple[FastAPI, str]
) -> None:
    app, secret = sqlite_portal
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)
