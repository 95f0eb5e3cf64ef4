"""``consentgate token create | list | revoke`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from consentgate.cli import app
from consentgate.exceptions import ConflictError, InputError, NotFoundError
from consentgate.ledger.store import Ledger
from consentgate.web.accounts import AccountStore, Scope

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture
def db(ledger: Ledger, ledger_url: str) -> str:
    """The URL of an initialised ledger (the ``ledger`` fixture creates the schema)."""
    return ledger_url


def run(db: str, *args: str) -> tuple[int, str, BaseException | None]:
    """Invoke ``consentgate --db DB token ARGS`` in-process; closes the ledger the command opened."""
    opened: list[Ledger] = []
    original = Ledger.open.__func__  # type: ignore[attr-defined]

    def tracking_open(cls: type[Ledger], /, url: str, **kwargs: object) -> Ledger:
        ledger: Ledger = original(cls, url, **kwargs)
        opened.append(ledger)
        return ledger

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Ledger, "open", classmethod(tracking_open))
        result = CliRunner().invoke(app, ["--db", db, "token", *args], env=ENV)
    for ledger in opened:
        ledger.close()
    return result.exit_code, result.output, result.exception


def test_create_prints_the_secret_once_and_it_works(db: str, ledger: Ledger) -> None:
    code, output, _ = run(
        db, "create", "training-gate", "--scope", "settings:read", "--scope", "decisions:read"
    )
    assert code == 0, output
    lines = output.splitlines()
    [secret] = [line for line in lines if line.startswith("cgt_")]
    assert "shown only once" in output
    assert "decisions:read, settings:read" in lines[0]
    token = AccountStore(ledger).verify_token(secret)
    assert token is not None
    assert token.name == "training-gate"
    assert token.scopes == frozenset({Scope.settings_read, Scope.decisions_read})
    assert secret not in run(db, "list")[1]
    assert secret not in run(db, "list", "--json")[1]


def test_comma_separated_scopes(db: str) -> None:
    code, output, _ = run(db, "create", "x", "--scope", "objections:read,lineage:read")
    assert code == 0, output
    [listed] = json.loads(run(db, "list", "--json")[1])
    assert listed["scopes"] == ["lineage:read", "objections:read"]


def test_list_and_revoke(db: str, ledger: Ledger) -> None:
    assert run(db, "list")[1].strip().endswith("0 token(s), 0 live")
    run(db, "create", "a", "--scope", "settings:read")
    out = run(db, "create", "b", "--scope", "decisions:read")[1]
    secret = next(line for line in out.splitlines() if line.startswith("cgt_"))
    listed = json.loads(run(db, "list", "--json")[1])
    assert [t["name"] for t in listed] == ["a", "b"]
    assert all(t["revoked_at"] is None for t in listed)
    token_id = listed[1]["token_id"]

    code, output, _ = run(db, "revoke", token_id)
    assert code == 0, output
    assert f"token {token_id} (b) revoked at" in output
    assert AccountStore(ledger).verify_token(secret) is None
    after = {t["name"]: t["revoked_at"] for t in json.loads(run(db, "list", "--json")[1])}
    assert after["a"] is None and after["b"] is not None
    table = run(db, "list")[1]
    assert token_id in table and "2 token(s), 1 live" in table

    code, _, exc = run(db, "revoke", token_id)
    assert code != 0 and isinstance(exc, ConflictError)
    code, _, exc = run(db, "revoke", "nosuchtoken")
    assert code != 0 and isinstance(exc, NotFoundError)
    assert "token list" in str(exc)


@pytest.mark.parametrize("args", [["--scope", "settings:nope"], ["--scope", ""]])
def test_bad_scopes_are_refused(db: str, args: list[str]) -> None:
    code, _, exc = run(db, "create", "x", *args)
    assert code != 0
    assert isinstance(exc, InputError)
    assert "--scope" in str(exc)
    assert json.loads(run(db, "list", "--json")[1]) == []


def test_scope_is_required(db: str) -> None:
    code, output, _ = run(db, "create", "x")
    assert code == 2
    assert "--scope" in output
