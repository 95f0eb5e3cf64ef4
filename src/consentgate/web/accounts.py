"""Portal accounts (members and DPOs) and API service tokens, stored as hashes in the ledger database.

Passwords are hashed with argon2id (argon2-cffi's defaults). Service tokens are 256-bit random
secrets shown once; the database keeps their SHA-256 only (a random secret needs no slow hash), so a
stolen database does not yield a usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from consentgate.exceptions import ConflictError, InputError, NotFoundError
from consentgate.ledger.schema import accounts, service_tokens
from consentgate.ledger.store import Ledger
from consentgate.names import check_name
from consentgate.timeutil import from_micros, to_micros


class Role(StrEnum):
    member = "member"
    dpo = "dpo"


class Scope(StrEnum):
    """What a service token may do; each API route names the scope it needs."""

    settings_read = "settings:read"
    settings_write = "settings:write"
    decisions_read = "decisions:read"
    objections_read = "objections:read"
    objections_write = "objections:write"
    lineage_read = "lineage:read"
    models_write = "models:write"
    """Register trained models (``POST /api/v1/models``); an override of a debt needs a DPO."""


LANGUAGES = ("en", "de")
TOKEN_CACHE_SECONDS = 5.0
"""A verified token is trusted this long without a database read; a revocation made through another
process (``consentgate token revoke``) therefore takes effect within this time."""
TOKEN_PREFIX = "cgt"  # noqa: S105 (a public prefix that marks consentgate tokens, not a secret)
hasher = PasswordHasher()
"""argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile). Tests swap in a cheap profile."""
_dummy: dict[str, str] = {}


def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, made with the current parameters.

    It keeps the cost of "no such user" and "wrong password" alike, so login timing does not reveal
    which usernames exist.
    """
    key = repr((hasher.time_cost, hasher.memory_cost, hasher.parallelism))
    if key not in _dummy:
        _dummy[key] = hasher.hash("consentgate: no such account")
    return _dummy[key]


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    member_id: int | None
    language: str | None
    generation: int = 0
    """The session generation: a session cookie issued under another one is no longer valid."""
    disabled: bool = False


@dataclass(frozen=True)
class ServiceToken:
    token_id: str
    name: str
    scopes: frozenset[Scope]
    created_at: int
    revoked_at: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "token_id": self.token_id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": from_micros(self.created_at).isoformat().replace("+00:00", "Z"),
            "revoked_at": None
            if self.revoked_at is None
            else from_micros(self.revoked_at).isoformat().replace("+00:00", "Z"),
        }


def parse_scopes(values: list[str]) -> frozenset[Scope]:
    """Scopes from the command line or a config; an unknown one is an error naming the valid ones."""
    out: set[Scope] = set()
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                out.add(Scope(part))
            except ValueError:
                valid = ", ".join(s.value for s in Scope)
                raise InputError(f"--scope: unknown scope {part!r} (expected one of {valid})") from None
    if not out:
        raise InputError("--scope: name at least one scope")
    return frozenset(out)


class AccountStore:
    """Accounts and tokens in the ledger's database (tables from migration 0003)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # Verified tokens by the SHA-256 of the presented string: one database read per token and
        # TOKEN_CACHE_SECONDS instead of one per request (it was a sixth of an API write's cost).
        self._verified: dict[str, tuple[float, ServiceToken]] = {}
        self._lock = threading.Lock()

    # --- accounts -------------------------------------------------------------------------------

    def create_account(
        self,
        *,
        username: str,
        password: str,
        role: Role,
        member_id: int | None = None,
        language: str | None = None,
    ) -> Account:
        username = check_name(username.strip().lower(), what="username")
        if len(password) < 8:
            raise InputError("password: expected at least 8 characters")
        if (role is Role.member) != (member_id is not None):
            raise InputError("a member account needs --member; a DPO account must not have one")
        if language is not None and language not in LANGUAGES:
            raise InputError(f"language: expected one of {', '.join(LANGUAGES)}")
        values = {
            "username": username,
            "password_hash": hasher.hash(password),
            "role": str(role),
            "member_id": member_id,
            "language": language,
            "created_at": to_micros(self.ledger.clock()),
        }
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(insert(accounts).values(**values))
        except IntegrityError:
            raise ConflictError(
                f"an account named {username!r} or for member {member_id} already exists"
            ) from None
        return Account(username, role, member_id, language)

    def get(self, username: str) -> Account | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(
                select(accounts).where(accounts.c.username == username.strip().lower())
            ).first()
        if row is None:
            return None
        return _account(row)

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password matches; None otherwise (same cost either way)."""
        with self.ledger.engine.connect() as conn:
            row = conn.execute(
                select(accounts).where(accounts.c.username == username.strip().lower())
            ).first()
        stored = _dummy_hash() if row is None else str(row.password_hash)
        try:
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled_at is not None:
            return None  # a disabled account cannot log in (its password still costs the same)
        return _account(row)

    def end_sessions(self, username: str) -> None:
        """Every session of ``username`` ends, wherever its cookie was copied to (logout)."""
        with self.ledger.engine.begin() as conn:
            conn.execute(
                update(accounts)
                .where(accounts.c.username == username.strip().lower())
                .values(session_generation=accounts.c.session_generation + 1)
            )

    def set_password(self, username: str, password: str) -> Account:
        """A new password; every session of the account ends."""
        if len(password) < 8:
            raise InputError("password: expected at least 8 characters")
        return self._change(username, password_hash=hasher.hash(password))

    def disable(self, username: str) -> Account:
        """The account can no longer log in, and every session of it ends."""
        return self._change(username, disabled_at=to_micros(self.ledger.clock()))

    def enable(self, username: str) -> Account:
        return self._change(username, disabled_at=None)

    def _change(self, username: str, **values: Any) -> Account:
        name = username.strip().lower()
        with self.ledger.engine.begin() as conn:
            done = conn.execute(
                update(accounts)
                .where(accounts.c.username == name)
                .values(session_generation=accounts.c.session_generation + 1, **values)
            )
            if done.rowcount == 0:
                raise NotFoundError(f"no account named {name!r}")
            row = conn.execute(select(accounts).where(accounts.c.username == name)).one()
        return _account(row)

    def set_language(self, username: str, language: str) -> None:
        if language not in LANGUAGES:
            raise InputError(f"language: expected one of {', '.join(LANGUAGES)}")
        with self.ledger.engine.begin() as conn:
            conn.execute(update(accounts).where(accounts.c.username == username).values(language=language))

    def accounts(self) -> list[Account]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.username)).all()
        return [_account(r) for r in rows]

    # --- service tokens -------------------------------------------------------------------------

    def create_token(self, *, name: str, scopes: frozenset[Scope]) -> tuple[ServiceToken, str]:
        """A new token; returns it and the secret to give the caller (shown only this once)."""
        check_name(name.strip(), what="token name")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        created = to_micros(self.ledger.clock())
        with self.ledger.engine.begin() as conn:
            conn.execute(
                insert(service_tokens).values(
                    token_id=token_id,
                    name=name.strip(),
                    secret_sha256=_sha256(secret),
                    scopes=" ".join(sorted(scopes)),
                    created_at=created,
                    revoked_at=None,
                )
            )
        token = ServiceToken(token_id, name.strip(), scopes, created, None)
        return token, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def tokens(self) -> list[ServiceToken]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(service_tokens).order_by(service_tokens.c.created_at)).all()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> ServiceToken:
        with self.ledger.engine.begin() as conn:
            result = conn.execute(
                update(service_tokens)
                .where(service_tokens.c.token_id == token_id, service_tokens.c.revoked_at.is_(None))
                .values(revoked_at=to_micros(self.ledger.clock()))
            )
            row = conn.execute(select(service_tokens).where(service_tokens.c.token_id == token_id)).first()
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[1].token_id != token_id}
        if row is None:
            raise NotFoundError(f"no token with id {token_id!r} (see `consentgate token list`)")
        if result.rowcount == 0:
            raise ConflictError(f"token {token_id} was already revoked")
        return _token(row)

    def verify_token(self, presented: str) -> ServiceToken | None:
        """The live token ``presented`` belongs to, or None (unknown, malformed or revoked)."""
        fingerprint = _sha256(presented)
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(fingerprint)
        if cached is not None and cached[0] > now:
            return cached[1]
        token = self._verify_in_db(presented)
        with self._lock:
            if token is None:
                self._verified.pop(fingerprint, None)
            else:
                if len(self._verified) > 10_000:
                    self._verified.clear()
                self._verified[fingerprint] = (now + TOKEN_CACHE_SECONDS, token)
        return token

    def _verify_in_db(self, presented: str) -> ServiceToken | None:
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(service_tokens).where(service_tokens.c.token_id == parts[1])).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(str(row.secret_sha256), _sha256(parts[2])):
            return None
        return _token(row)


def _account(row: Any) -> Account:
    return Account(
        row.username,
        Role(row.role),
        row.member_id,
        row.language,
        int(row.session_generation),
        row.disabled_at is not None,
    )


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: object) -> ServiceToken:
    scopes = frozenset(Scope(s) for s in str(row.scopes).split())  # type: ignore[attr-defined]
    return ServiceToken(
        row.token_id,  # type: ignore[attr-defined]
        row.name,  # type: ignore[attr-defined]
        scopes,
        row.created_at,  # type: ignore[attr-defined]
        row.revoked_at,  # type: ignore[attr-defined]
    )
