"""Who is asking: sessions, service tokens, the trusted-header mode, roles, scopes and CSRF.

A request is made by exactly one principal. In order:

1. ``Authorization: Bearer cgt_…``: a service token, limited to its scopes (no session, no CSRF,
   since the browser never sends it by itself);
2. the trusted header (only when configured, and only from a trusted proxy address);
3. the signed session cookie set at login.

Anything else is anonymous. Routes state what they need through the dependencies at the bottom
(``CurrentMember``, ``CurrentDPO``, ``scoped(...)``) so the rules are visible where the route is.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from consentgate.web.accounts import Account, Role, Scope
from consentgate.web.state import Portal

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    kind: str
    """anonymous, member, dpo or token."""
    username: str | None = None
    member_id: int | None = None
    scopes: frozenset[Scope] = frozenset()
    token_id: str | None = None
    language: str | None = None
    via_session: bool = False

    @property
    def actor(self) -> str:
        """What goes into the ledger's ``actor`` field for events this principal causes."""
        if self.kind == "token":
            return f"token:{self.token_id}"
        return f"{self.kind}:{self.username}"

    @classmethod
    def of(cls, account: Account, *, via_session: bool) -> Principal:
        return cls(
            kind=str(account.role),
            username=account.username,
            member_id=account.member_id,
            language=account.language,
            via_session=via_session,
        )


ANONYMOUS = Principal("anonymous")


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def resolve_principal(request: Request) -> Principal:
    """The principal of ``request`` (cached on the request: several dependencies ask)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = _resolve(request)
    request.state.principal = principal
    return principal


def _resolve(request: Request) -> Principal:
    portal = portal_of(request)
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise HTTPException(401, "Authorization: expected 'Bearer <token>'")
        token = portal.accounts.verify_token(credentials.strip())
        if token is None:
            raise HTTPException(401, "the service token is unknown, revoked or malformed")
        return Principal("token", scopes=token.scopes, token_id=token.token_id, username=token.name)
    header = portal.config.trusted_header
    if header and request.headers.get(header):
        client = request.client.host if request.client else None
        if not portal.config.proxy_trusted(client):
            raise HTTPException(403, f"{header} is accepted only from the single sign-on proxy")
        account = portal.accounts.get(request.headers[header])
        if account is None or account.disabled:
            raise HTTPException(403, f"{header}: no enabled consentgate account for this user")
        return Principal.of(account, via_session=False)
    username = request.session.get("user")
    if isinstance(username, str):
        account = portal.accounts.get(username)
        # A session is valid only under the generation it was issued with: logout, a new password
        # or disabling the account moves the generation on, and every copy of the cookie is void.
        if account is not None and not account.disabled and request.session.get("gen") == account.generation:
            return Principal.of(account, via_session=True)
        request.session.clear()
    return ANONYMOUS


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Every state-changing request that rides on the session cookie must carry the session's token.

    Forms send it as a hidden field, scripts as the ``X-CSRF-Token`` header. Only requests with a
    bearer token need none: they carry no ambient credentials. Behind a single sign-on proxy the
    browser's proxy cookie is ambient too, so SSO requests need the token like session ones.
    """
    if request.method in SAFE_METHODS:
        return
    principal = resolve_principal(request)
    if principal.kind == "token":
        return
    expected = request.session.get("csrf")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not presented or not hmac.compare_digest(expected, presented):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


async def require_member(request: Request) -> Principal:
    principal = resolve_principal(request)
    if principal.kind == "anonymous":
        raise HTTPException(401, "log in first")
    if principal.kind != "member" or principal.member_id is None:
        raise HTTPException(403, "this page is for members")
    return principal


async def require_dpo(request: Request) -> Principal:
    principal = resolve_principal(request)
    if principal.kind == "anonymous":
        raise HTTPException(401, "log in first")
    if principal.kind != "dpo":
        raise HTTPException(403, "the console needs the DPO role")
    return principal


def scoped(scope: Scope, *, member_self: bool = False, dpo: bool = True) -> Any:
    """An API dependency: a token with ``scope``; or a DPO (``dpo``); or the member themself.

    ``member_self`` lets a logged-in member use the route for their own ``member_id`` path value.
    """

    async def dependency(request: Request) -> Principal:
        principal = resolve_principal(request)
        if principal.kind == "anonymous":
            raise HTTPException(401, "authentication required: a bearer token or a session")
        if principal.kind == "token":
            if scope not in principal.scopes:
                raise HTTPException(403, f"this token lacks the scope {scope.value}")
            return principal
        if principal.kind == "dpo" and dpo:
            return principal
        if principal.kind == "member" and member_self:
            wanted = request.path_params.get("member_id")
            if wanted is not None and str(wanted) == str(principal.member_id):
                return principal
            raise HTTPException(403, "a member may see and change only their own data")
        raise HTTPException(403, f"needs a token with the scope {scope.value}")

    return Depends(dependency)


# Dependencies are ``async def`` so FastAPI calls them on the event loop: a plain ``def`` dependency
# costs a hop through the thread pool per request. They do no I/O but the principal's look-up, which
# reads the database only when a token or account is not in AccountStore's short-lived cache.


async def _portal(request: Request) -> Portal:
    return portal_of(request)


async def _principal(request: Request) -> Principal:
    return resolve_principal(request)


PortalDep = Annotated[Portal, Depends(_portal)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
CurrentMember = Annotated[Principal, Depends(require_member)]
CurrentDPO = Annotated[Principal, Depends(require_dpo)]
CSRFChecked = Depends(check_csrf)

__all__ = [
    "ANONYMOUS",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "CSRFChecked",
    "CurrentDPO",
    "CurrentMember",
    "PortalDep",
    "Principal",
    "PrincipalDep",
    "Role",
    "csrf_token",
    "scoped",
]
