"""The web app's error boundary: an unexpected failure is a page or a problem document, never a bare 500.

``ErrorBoundary`` sits just inside ``SecurityHeaders`` (so the answer carries every security header)
and outside everything else: whatever a route, a dependency or a middleware raises is logged once with
a reference id (logger ``consentgate.web``, the full trace) and answered with

- on ``/api/…``: ``application/problem+json`` (RFC 9457) with ``status`` 500 (507 when the database or
  the disk refused the write: nothing was stored; 503 with ``Retry-After`` when the database is down
  or locked), a ``detail`` sentence and the ``reference``;
- elsewhere: a short page in the reader's language (``Accept-Language``) naming the reference.

The page does not claim that nothing was stored: a failure can come after a commit, so it says how to
check (a change is stored when its receipt was shown). If the response had already started, nothing
more can be sent; the failure is logged and the connection closed.
"""

from __future__ import annotations

import errno
import json
import logging
import secrets

from markupsafe import escape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentgate.exceptions import one_line
from consentgate.storage import database_unavailable, storage_refusal
from consentgate.web.i18n import negotiate

log = logging.getLogger("consentgate.web")

_PAGE = {
    "en": (
        "Something went wrong",
        "Something went wrong on our side, and the page could not be shown.",
        "If you were changing a setting or filing an objection, open the page again before you retry:"
        " a change is stored when its receipt was shown.",
        "Reference for the data-protection team",
    ),
    "de": (
        "Etwas ist schiefgegangen",
        "Bei uns ist etwas schiefgegangen; die Seite konnte nicht angezeigt werden.",
        "Wenn Sie eine Einstellung ändern oder einen Widerspruch einlegen wollten, öffnen Sie die Seite"
        " erneut, bevor Sie es noch einmal versuchen: Eine Änderung ist gespeichert, wenn ihre Quittung"
        " angezeigt wurde.",
        "Kennung für das Datenschutzteam",
    ),
}


def new_reference() -> str:
    return secrets.token_hex(6)


RETRY_AFTER = 5
"""Seconds a client should wait when the ledger's database is down or locked (``Retry-After``)."""
_TITLES = {500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage"}
_DETAILS = {
    500: "An unexpected failure; it was logged with reference {reference}.",
    503: (
        "The ledger's database is not reachable or is locked right now; retry after the Retry-After"
        " seconds, with the same Idempotency-Key (a change is stored at most once)"
        " (reference {reference})."
    ),
    507: "The database or the disk is full; nothing was stored. Try again later (reference {reference}).",
}


def problem_body(reference: str, status: int = 500) -> bytes:
    return json.dumps(
        {
            "type": "about:blank",
            "title": _TITLES[status],
            "status": status,
            "detail": _DETAILS[status].format(reference=reference),
            "reference": reference,
        }
    ).encode()


def page_body(reference: str, language: str, stylesheet: str = "/static/portal.css") -> bytes:
    title, first, second, label = _PAGE.get(language, _PAGE["en"])
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{escape(stylesheet)}"><title>{escape(title)}</title></head>'
        f'<body><main id="main"><h1>{escape(title)}</h1><p>{escape(first)}</p><p>{escape(second)}</p>'
        f'<p>{escape(label)}: <code id="reference">{escape(reference)}</code></p>'
        f'<p><a href="/">consentgate</a></p></main></body></html>'
    ).encode()


class ErrorBoundary:
    """Turns any exception below it into a 500 page or problem document with a logged reference."""

    def __init__(self, app: ASGIApp, stylesheet: str = "/static/portal.css") -> None:
        self.app = app
        self.stylesheet = stylesheet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            reference = new_reference()
            full = storage_refusal(exc) is not None or (
                isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            )
            down = not full and database_unavailable(exc) is not None
            method, where = scope.get("method", "?"), scope.get("path", "?")
            if full or down:  # the database's state, not a bug: one line each, no trace
                log.warning(
                    "database refused [reference %s] on %s %s: %s",
                    reference,
                    method,
                    where,
                    one_line(exc, 300),
                )
            else:
                log.exception("unexpected failure [reference %s] on %s %s", reference, method, where)
            if started:
                return
            path = str(scope.get("path", ""))
            status = 507 if full else 503 if down else 500
            if path.startswith("/api/"):
                body, media = problem_body(reference, status), b"application/problem+json"
            else:
                headers = dict(scope.get("headers") or [])
                language = negotiate(headers.get(b"accept-language", b"").decode("latin-1"))
                body, media = page_body(reference, language, self.stylesheet), b"text/html; charset=utf-8"
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        *([(b"retry-after", str(RETRY_AFTER).encode())] if down else []),
                        (b"content-type", media),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-consentgate-reference", reference.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


FASTAPI_UNREADABLE = "There was an error parsing the body"
"""FastAPI's 400 for a body its JSON reader gave up on, whatever the reason."""


def unreadable_body(cause: BaseException | None) -> str:
    """What was wrong with a body FastAPI could not read (its own message says only that)."""
    if isinstance(cause, UnicodeDecodeError):
        byte = cause.object[cause.start] if cause.start < len(cause.object) else 0
        return f"body: not valid UTF-8 (byte 0x{byte:02x} at offset {cause.start}); expected a JSON object"
    if isinstance(cause, RecursionError):
        return "body: nested too deeply to read; expected a JSON object"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "body: a number with too many digits (at most 4,300); expected a JSON object"
    return "body: could not be read as JSON; expected a JSON object"
