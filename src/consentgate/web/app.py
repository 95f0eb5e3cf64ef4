"""The FastAPI application: middleware, error handling, and the three route groups.

- member pages (``pages.py``): settings, policy notice, where my data went, objections;
- the DPO console (``console.py``) under ``/console``;
- the JSON API (``api.py``) under ``/api/v1``, with its OpenAPI document at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentgate import __version__
from consentgate.exceptions import ConsentgateError, DebtOutstanding
from consentgate.ledger.store import Ledger
from consentgate.policy import Timeline
from consentgate.web import api, console, pages
from consentgate.web.body import BodyLimit
from consentgate.web.errors import FASTAPI_UNREADABLE, RETRY_AFTER, ErrorBoundary, unreadable_body
from consentgate.web.state import Portal, PortalConfig
from consentgate.web.templating import render

# No inline script or style anywhere: every script and stylesheet is a file served from /static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the security headers to every response; pages about a person are never cached."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.headers = SECURITY_HEADERS + (
            ((b"strict-transport-security", b"max-age=31536000; includeSubDomains"),) if hsts else ()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(self.headers)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(
    config: PortalConfig, *, ledger: Ledger | None = None, timeline: Timeline | None = None
) -> FastAPI:
    """The portal application for ``config`` (a ``ledger`` may be passed in, e.g. with a test clock)."""
    portal = Portal(config, ledger or Ledger.open(config.db), timeline)
    app = FastAPI(
        title="consentgate",
        version=__version__,
        summary="Which member data may be used for which purpose, when, and why.",
        openapi_url="/api/v1/openapi.json",
        # The interactive docs pages load scripts from a CDN and use inline script; we serve neither.
        docs_url=None,
        redoc_url=None,
    )
    app.state.portal = portal
    app.add_middleware(
        SessionMiddleware,
        secret_key=config.secret_key,
        session_cookie="consentgate_session",
        max_age=config.session_hours * 3600,
        same_site="lax",
        https_only=config.secure_cookies,
    )
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(ErrorBoundary)  # inside SecurityHeaders: a 500 carries every header too
    app.add_middleware(SecurityHeaders, hsts=config.secure_cookies)  # HSTS only where HTTPS is promised
    static = resources.files("consentgate.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(ConsentgateError)
    async def domain_error(request: Request, exc: ConsentgateError) -> Response:
        if exc.status_code == 503:
            # The database (or the rate-limit store) is down, locked or closing: retry, not give up.
            retry = {"retry-after": str(RETRY_AFTER)}
            if _wants_json(request):
                problem = {
                    "type": "about:blank",
                    "title": "Service Unavailable",
                    "status": 503,
                    "detail": str(exc),
                }
                return JSONResponse(
                    problem, status_code=503, headers=retry, media_type="application/problem+json"
                )
            page = render(request, "error.html", {"status": 503, "message": str(exc)}, status=503)
            page.headers.update(retry)
            return page
        if _wants_json(request):
            body: dict[str, object] = {"detail": str(exc)}
            if isinstance(exc, DebtOutstanding):
                body["count"] = exc.count  # a client should not have to parse the number out of a sentence
            return JSONResponse(body, status_code=exc.status_code)
        return render(
            request, "error.html", {"status": exc.status_code, "message": str(exc)}, status=exc.status_code
        )

    # Starlette's class, not FastAPI's subclass: the router's 404 and 405 and FastAPI's own 400 for
    # an unreadable body are Starlette's and would otherwise get the framework's bare answer.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 400 and exc.detail == FASTAPI_UNREADABLE:
            exc = StarletteHTTPException(400, unreadable_body(exc.__cause__))
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "message": str(exc.detail)},
            status=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        if _wants_json(request):
            return JSONResponse({"detail": problems}, status_code=422)
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return render(request, "error.html", {"status": 422, "message": message}, status=422)

    app.include_router(pages.router)
    app.include_router(console.router)
    app.include_router(api.router)
    return app


SERVE_ENV = "CONSENTGATE_SERVE"
"""JSON of ``PortalConfig`` fields plus ``policy_dirs`` and ``builtin_policies``, for worker processes."""


def app_from_environment() -> FastAPI:
    """The uvicorn factory for ``consentgate serve --workers N``: each worker builds the same app.

    Every worker must sign sessions with the same key, so the key travels in the environment of the
    workers (never on a command line).
    """
    import json
    import os
    from pathlib import Path

    from consentgate.policy import load_timeline

    settings = json.loads(os.environ[SERVE_ENV])
    timeline = load_timeline(
        [Path(p) for p in settings.pop("policy_dirs")], include_builtin=settings.pop("builtin_policies")
    )
    settings["trusted_proxies"] = tuple(settings["trusted_proxies"])
    return create_app(PortalConfig(**settings), timeline=timeline)
