"""Rendering pages: Jinja2 with the member's language, the CSRF token and the principal in context."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from consentgate.web.auth import CSRF_FIELD, csrf_token, portal_of, resolve_principal
from consentgate.web.i18n import format_date_for, format_instant_for, negotiate

_environment = Environment(
    loader=PackageLoader("consentgate.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_environment)

RECIPIENTS = {
    "operator": "the operator (LinkedIn)",
    "affiliates": "affiliated companies of the group",
    "parent_company": "the parent company (Microsoft)",
    "advertisers": "advertisers",
    "partners": "partners",
    "recruiters": "recruiters",
    "members": "other members",
}


def language_of(request: Request) -> str:
    """The member's choice (account, then session), else the browser's ``Accept-Language``."""
    try:
        principal = resolve_principal(request)
    except Exception:  # an invalid bearer token on a page: the page still renders its error
        principal = None
    if principal is not None and principal.language:
        return principal.language
    chosen = request.session.get("language")
    if isinstance(chosen, str) and chosen in ("en", "de"):
        return chosen
    return negotiate(request.headers.get("accept-language"))


def gettext_for(request: Request) -> Callable[[str], str]:
    """The translation function for this request's language (for messages built in routes)."""
    return portal_of(request).translations.gettext(language_of(request))


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    portal = portal_of(request)
    language = language_of(request)
    gettext = portal.translations.gettext(language)

    def when(instant: datetime | None) -> str:
        return "" if instant is None else format_instant_for(language, instant)

    def day(instant: datetime | None) -> str:
        return "" if instant is None else format_date_for(language, instant)

    def settings_label(key: str) -> str:
        setting = portal.taxonomy.settings.get(key)
        if setting is None:
            return key
        return setting.label.de if language == "de" else setting.label.en

    def purpose_name(key: str) -> str:
        purpose = portal.taxonomy.purposes.get(key)
        return key if purpose is None else purpose.name

    def recipient_words(recipient: str) -> str:
        return gettext(RECIPIENTS.get(str(recipient), str(recipient)))

    try:
        principal = resolve_principal(request)
    except Exception:
        principal = None
    values: dict[str, Any] = {
        "settings_label": settings_label,
        "purpose_name": purpose_name,
        "recipient_words": recipient_words,
        "request": request,
        "_": gettext,
        "lang": language,
        "when": when,
        "day": day,
        "principal": principal,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "path": request.url.path,
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status)
    response.headers["Content-Language"] = language
    return response
