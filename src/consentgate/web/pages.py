"""Member pages: login, settings on one page, the policy notice, where my data went (and why), objections."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from consentgate.decisions import member_state
from consentgate.exceptions import NotFoundError
from consentgate.ledger.events import LedgerEvent
from consentgate.ledger.state import ObjectionStatus
from consentgate.objections import CONTROL_CHARACTERS, file_objection
from consentgate.snapshots.lineage import member_lineage
from consentgate.snapshots.member_models import member_models
from consentgate.snapshots.proof import prove_member
from consentgate.snapshots.registry import Registry
from consentgate.web.auth import CSRFChecked, CurrentMember, PortalDep, Principal, PrincipalDep
from consentgate.web.member import (
    acknowledge_notice,
    apply_gpc,
    change_setting,
    objectionable_purposes,
    parse_bool,
    pending_notice,
    settings_view,
    use_none,
    use_none_plan,
)
from consentgate.web.state import Portal
from consentgate.web.templating import gettext_for, render

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
    gettext = gettext_for(request)
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
    request.session["gen"] = account.generation
    if account.language is None and isinstance(language, str):
        portal.accounts.set_language(account.username, language)
    request.state.principal = None
    return RedirectResponse(_local(next, _home(str(account.role))), status_code=303)


@router.post("/logout", dependencies=[CSRFChecked])
def logout(request: Request, portal: PortalDep, principal: PrincipalDep) -> Response:
    """Ends every copy of this account's sessions (a cookie copied before logout no longer works)."""
    if principal.via_session and principal.username is not None:
        portal.accounts.end_sessions(principal.username)
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


# --- settings ---------------------------------------------------------------------------------------


MAX_RECEIPTS = 100
_SEQ = re.compile(r"[0-9]{1,19}")


def _receipts(portal: Portal, member_id: int, text: str | None) -> list[LedgerEvent]:
    """The member's own events named in ``?receipt=1,2``: a receipt never shows someone else's event."""
    if not text:
        return []
    # ASCII digits only, as many as a seq can have: "²".isdigit() is true and int() refuses it, and
    # int() refuses 5,000 digits; neither may turn a page into a 500. Anything else names no event.
    wanted = {int(part) for part in text.split(",")[:MAX_RECEIPTS] if _SEQ.fullmatch(part)}
    return [e for e in portal.ledger.member_events(member_id) if e.seq in wanted]


def _gpc(request: Request, portal: Portal, principal: Principal) -> list[LedgerEvent]:
    if request.headers.get("sec-gpc", "").strip() != "1" or principal.member_id is None:
        return []
    return apply_gpc(portal, member_id=principal.member_id, at=portal.now())


@router.get("/settings")
def settings_page(
    request: Request, portal: PortalDep, principal: CurrentMember, receipt: str | None = None
) -> Response:
    assert principal.member_id is not None
    gpc_events = _gpc(request, portal, principal)
    now = portal.now()
    view = settings_view(portal, principal.member_id, now)
    if pending_notice(portal, view.state, now) is not None:
        return RedirectResponse("/notice", status_code=303)
    return render(
        request,
        "settings.html",
        {
            "view": view,
            "receipts": _receipts(portal, principal.member_id, receipt),
            "gpc_events": gpc_events,
            "plan": use_none_plan(view),
            "taxonomy": portal.taxonomy,
        },
    )


@router.post("/settings/none", dependencies=[CSRFChecked])
def use_none_action(
    portal: PortalDep, principal: CurrentMember, keys: Annotated[list[str] | None, Form()] = None
) -> Response:
    assert principal.member_id is not None
    events = use_none(portal, member_id=principal.member_id, actor=principal.actor, keys=keys or [])
    receipts = ",".join(str(e.seq) for e in events) or "none"
    return RedirectResponse(f"/settings?receipt={receipts}#receipt", status_code=303)


@router.get("/settings/none")
def use_none_confirm(request: Request, portal: PortalDep, principal: CurrentMember) -> Response:
    """The confirmation page: lists exactly what the one action will switch off."""
    assert principal.member_id is not None
    view = settings_view(portal, principal.member_id, portal.now())
    return render(request, "use_none.html", {"view": view, "plan": use_none_plan(view)})


@router.post("/settings/{key}", dependencies=[CSRFChecked])
def change_setting_action(
    portal: PortalDep,
    principal: CurrentMember,
    key: str,
    value: Annotated[str, Form(pattern="^(on|off)$")],
) -> Response:
    assert principal.member_id is not None
    event = change_setting(
        portal,
        member_id=principal.member_id,
        key=key,
        value=parse_bool(value, "value"),
        actor=principal.actor,
    )
    return RedirectResponse(f"/settings?receipt={event.seq}#receipt", status_code=303)


# --- the policy notice ------------------------------------------------------------------------------


@router.get("/notice")
def notice_page(request: Request, portal: PortalDep, principal: CurrentMember) -> Response:
    assert principal.member_id is not None
    now = portal.now()
    view = settings_view(portal, principal.member_id, now)
    notice = pending_notice(portal, view.state, now)
    if notice is None:
        return RedirectResponse("/settings", status_code=303)
    return render(request, "notice.html", {"notice": notice, "view": view})


@router.post("/notice", dependencies=[CSRFChecked])
def acknowledge(portal: PortalDep, principal: CurrentMember, policy: Annotated[str, Form()]) -> Response:
    assert principal.member_id is not None
    event = acknowledge_notice(
        portal, member_id=principal.member_id, policy_ref=policy, actor=principal.actor
    )
    return RedirectResponse(f"/settings?receipt={event.seq}#receipt", status_code=303)


# --- where my data went -----------------------------------------------------------------------------


@router.get("/data")
def data_page(request: Request, portal: PortalDep, principal: CurrentMember) -> Response:
    assert principal.member_id is not None
    lineage = member_lineage(Registry(portal.ledger), principal.member_id)
    models = member_models(portal.ledger, portal.engine, principal.member_id, lineage=lineage)
    view = settings_view(portal, principal.member_id, portal.now())
    return render(request, "data.html", {"lineage": lineage, "models": models, "view": view})


@router.get("/data/snapshots/{snapshot_id}")
def data_snapshot_page(
    request: Request, portal: PortalDep, principal: CurrentMember, snapshot_id: str
) -> Response:
    """The member's own proof for one snapshot that holds their data, in plain words."""
    assert principal.member_id is not None
    registry = Registry(portal.ledger)
    # A snapshot without the member's data looks like an unknown one: no probing of snapshot ids.
    hidden = NotFoundError(f"no snapshot {snapshot_id!r} holds your data")
    if registry.get(snapshot_id) is None:
        raise hidden
    proof = prove_member(
        registry=registry,
        ledger=portal.ledger,
        engine=portal.engine,
        snapshot_id=snapshot_id,
        member_id=principal.member_id,
    )
    if not proof.included:
        raise hidden
    return render(request, "data_snapshot.html", {"proof": proof})


# --- objections (Art. 21) ---------------------------------------------------------------------------


def _own_objections(portal: Portal, member_id: int) -> list[ObjectionStatus]:
    objections = member_state(portal.ledger, member_id, portal.now()).objections
    return sorted(objections.values(), key=lambda s: s.received_at, reverse=True)


@router.get("/objections")
def objections_page(request: Request, portal: PortalDep, principal: CurrentMember) -> Response:
    assert principal.member_id is not None
    now = portal.now()
    return render(
        request,
        "objections.html",
        {
            "objections": _own_objections(portal, principal.member_id),
            "purposes": objectionable_purposes(portal, principal.member_id, now),
            "now": now,
            "error": None,
        },
    )


@router.post("/objections", dependencies=[CSRFChecked])
def file_objection_action(
    request: Request,
    portal: PortalDep,
    principal: CurrentMember,
    purposes: Annotated[list[str] | None, Form()] = None,
    grounds: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    assert principal.member_id is not None
    member_id = principal.member_id
    now = portal.now()
    allowed = {p for p, _, _ in objectionable_purposes(portal, member_id, now)}
    chosen = [p for p in purposes or [] if p in allowed]
    gettext = gettext_for(request)

    def refuse(message: str) -> Response:
        return render(
            request,
            "objections.html",
            {
                "objections": _own_objections(portal, member_id),
                "purposes": objectionable_purposes(portal, member_id, now),
                "now": now,
                "error": message,
            },
            status=400,
        )

    if not chosen or len(chosen) != len(purposes or []):
        return refuse(gettext("Choose at least one of the purposes listed."))
    if CONTROL_CHARACTERS.search(grounds):
        return refuse(
            gettext(
                "Your grounds hold a character that cannot be stored (a control character, e.g. from a"
                " copied text); remove it and send again."
            )
        )
    statuses = file_objection(
        portal.ledger,
        portal.taxonomy,
        member_id=principal.member_id,
        purposes=chosen,
        at=None,
        grounds=grounds.strip(),
        actor=principal.actor,
    )
    references = ",".join(s.reference for s in statuses)
    return RedirectResponse(f"/objections/{statuses[0].reference}?filed={references}", status_code=303)


@router.get("/objections/{reference}")
def objection_page(
    request: Request, portal: PortalDep, principal: CurrentMember, reference: str, filed: str | None = None
) -> Response:
    assert principal.member_id is not None
    own = {s.reference: s for s in _own_objections(portal, principal.member_id)}
    if reference not in own:
        # Someone else's reference and an unknown one look the same: no probing of references.
        raise NotFoundError(f"you have no objection with reference {reference!r}")
    just_filed = [own[r] for r in (filed or "").split(",") if r in own]
    return render(
        request,
        "objection.html",
        {"objection": own[reference], "filed": just_filed, "now": portal.now()},
    )
