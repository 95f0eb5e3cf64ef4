"""Member pages: login, settings on one page, the policy notice, where my data went, objections."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from consentgate.web.auth import CSRFChecked, PortalDep, PrincipalDep
from consentgate.web.templating import render

router = APIRouter(include_in_schema=False)


def _local(target: str | None, fallback: str = "/") -> str:
    """Only redirect within the site (no open redirect through ``next``)."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    return target


def _home(kind: str) -> str:
    return "/console" if kind == "dpo" else "/settings"


@router.get("/")
def index(principal: PrincipalDep) -> Response:
    if principal.kind in ("member", "dpo"):
        return RedirectResponse(_home(principal.kind), status_code=303)
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": _local(next, ""), "error": None, "username": ""})


@router.post("/login", dependencies=[CSRFChecked])
def login(
    request: Request,
    portal: PortalDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "",
) -> Response:
    client = request.client.host if request.client else "?"
    gettext = portal.translations.gettext(_language(request))
    wait = portal.limiter.retry_after(client, username)
    if wait is not None:
        message = gettext("Too many failed attempts. Try again in {seconds} seconds.").format(seconds=wait)
        response = render(
            request,
            "login.html",
            {"next": _local(next, ""), "error": message, "username": username},
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    account = portal.accounts.authenticate(username, password)
    if account is None:
        portal.limiter.failed(client, username)
        message = gettext("Wrong username or password.")
        return render(
            request,
            "login.html",
            {"next": _local(next, ""), "error": message, "username": username},
            status=401,
        )
    portal.limiter.succeeded(client, username)
    language = request.session.get("language")
    # A fresh session at login: a session fixed before login (and its CSRF token) is not carried over.
    request.session.clear()
    request.session["user"] = account.username
    if account.language is None and isinstance(language, str):
        portal.accounts.set_language(account.username, language)
    request.state.principal = None
    return RedirectResponse(_local(next, _home(str(account.role))), status_code=303)


def _language(request: Request) -> str:
    from consentgate.web.templating import language_of

    return language_of(request)


@router.post("/logout", dependencies=[CSRFChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.post("/language", dependencies=[CSRFChecked])
def choose_language(
    request: Request,
    portal: PortalDep,
    principal: PrincipalDep,
    language: Annotated[str, Form(pattern="^(en|de)$")],
    next: Annotated[str, Form()] = "/",
) -> Response:
    """The member's choice of language: kept on the account (and in the session before login)."""
    request.session["language"] = language
    if principal.username is not None and principal.kind in ("member", "dpo"):
        portal.accounts.set_language(principal.username, language)
    return RedirectResponse(_local(next), status_code=303)
