"""``consentgate inspect serve``: the archive inspector as a local page, for members without a terminal.

Listens on 127.0.0.1 only (the CLI gives uvicorn no other host). The member chooses their ZIP (or
the ZIPs of a two-part export), country, date and language; the page shows the same report as
``inspect --out`` and offers the checklist and the letter for download.

- The upload is written into a temporary folder that is removed before the answer is sent; the
  four rendered files are kept in memory only (the last ``KEPT`` reports, for ``KEEP_SECONDS``), so
  the downloads work after the upload is gone. Nothing is written anywhere else, nothing is sent.
- The portal's security headers and CSP (no inline script or style: the stylesheet is served from
  this origin). Requests must name a loopback host (``Host: 127.0.0.1:…`` or ``localhost:…``),
  which defeats DNS rebinding, and a form post must carry this process's form token (a page of
  another site cannot read it), which defeats cross-site posts.
- A refused archive (not a ZIP, unsafe names, a bomb …) is answered with the form and one clear
  sentence; an unexpected failure with one sentence and a line in the log, never a traceback.
"""

from __future__ import annotations

import hmac
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Annotated, Any

from babel import Locale
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConsentgateError, InputError
from consentgate.inspect.inspector import inspect_archive
from consentgate.inspect.render import OUTPUT_FILES, Renderer, _environment, stylesheet
from consentgate.timeutil import now_utc, parse_instant
from consentgate.web.app import SecurityHeaders
from consentgate.web.body import BodyLimit
from consentgate.web.errors import ErrorBoundary
from consentgate.web.i18n import LANGUAGES, load_translations, negotiate

MAX_UPLOAD_BYTES = 8 << 30
"""The largest upload the page takes (8 GiB: every ZIP of a large two-part export together)."""
KEPT = 8
KEEP_SECONDS = 1800
MAX_UPLOAD_FILES = 8
_COPY_CHUNK = 1 << 20
_LOOPBACK = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")
_CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "objection.html": "text/html; charset=utf-8",
    "checklist.md": "text/markdown; charset=utf-8",
    "objection.txt": "text/plain; charset=utf-8",
}


@dataclass
class _Kept:
    files: dict[str, str]
    made: float


class _Reports:
    """The rendered files of the last reports, in memory only, each under an unguessable token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, _Kept] = OrderedDict()

    def put(self, files: dict[str, str]) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._items[token] = _Kept(files, time.monotonic())
            while len(self._items) > KEPT:
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> dict[str, str] | None:
        with self._lock:
            self._expire()
            kept = self._items.get(token)
            return None if kept is None else kept.files

    def _expire(self) -> None:
        limit = time.monotonic() - KEEP_SECONDS
        for token in [t for t, k in self._items.items() if k.made < limit]:
            del self._items[token]


def _language(request: Request, chosen: str | None = None) -> str:
    if chosen in LANGUAGES:
        return str(chosen)
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    return negotiate(request.headers.get("accept-language"))


def create_inspect_app(engine: DecisionEngine, *, today: datetime | None = None) -> FastAPI:
    """The local page (``today``: the date the letters carry, for tests; default the real date)."""
    app = FastAPI(title="consentgate inspect", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=MAX_UPLOAD_BYTES)
    app.add_middleware(ErrorBoundary, stylesheet="/static/inspect.css")
    app.add_middleware(SecurityHeaders)
    translations = load_translations()
    reports = _Reports()
    form_token = secrets.token_urlsafe(24)
    countries = sorted(engine.taxonomy.assigned_countries)

    def country_names(language: str) -> list[tuple[str, str]]:
        names = Locale.parse(language).territories
        return sorted(((c, str(names.get(c, c))) for c in countries), key=lambda item: item[1])

    def page(request: Request, language: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        gettext = translations.gettext(language)
        context: dict[str, Any] = {
            "_": gettext,
            "lang": language,
            "standalone": False,
            "css": "",
            "form_token": form_token,
            "country_names": country_names,
            "languages": LANGUAGES,
            "error": None,
            "chosen": {"country": "", "at": "", "lang": language, "grounds": ""},
            "today": now_utc().date().isoformat(),
        }
        context.update(values)
        html = _environment.get_template("serve_form.html").render(context)
        return HTMLResponse(html, status_code=status, headers={"content-language": language})

    @app.middleware("http")
    async def loopback_only(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host", "")
        if not _LOOPBACK.match(host):
            return PlainTextResponse(
                "This page answers only on 127.0.0.1 (the Host header names another address).",
                status_code=421,
            )
        response: Response = await call_next(request)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, exc: RequestValidationError) -> Response:
        language = _language(request)
        gettext = translations.gettext(language)
        return page(request, language, status=422, error=gettext("Choose your archive (a ZIP file) first."))

    @app.get("/static/inspect.css")
    def css() -> Response:
        return Response(stylesheet(), media_type="text/css; charset=utf-8")

    @app.get("/", response_class=HTMLResponse)
    def form(request: Request) -> HTMLResponse:
        return page(request, _language(request))

    @app.post("/report", response_class=HTMLResponse)
    def report(
        request: Request,
        archive: Annotated[list[UploadFile], File()],
        token: Annotated[str, Form()] = "",
        country: Annotated[str, Form()] = "",
        at: Annotated[str, Form()] = "",
        lang: Annotated[str, Form()] = "",
        grounds: Annotated[str, Form(max_length=20_000)] = "",
    ) -> HTMLResponse:
        language = _language(request, lang)
        gettext = translations.gettext(language)
        chosen = {"country": country, "at": at, "lang": language, "grounds": grounds}
        if not hmac.compare_digest(token.encode(), form_token.encode()):
            return page(
                request,
                language,
                status=403,
                chosen=chosen,
                error=gettext(
                    "This form has expired; it was loaded before the inspector restarted. Try again."
                ),
            )
        uploads = [u for u in archive if u.filename]
        if not uploads:
            return page(
                request,
                language,
                status=422,
                chosen=chosen,
                error=gettext("Choose your archive (a ZIP file) first."),
            )
        if len(uploads) > MAX_UPLOAD_FILES:
            return page(
                request,
                language,
                status=422,
                chosen=chosen,
                error=gettext("Choose at most {count} files (the ZIPs of one export).").format(
                    count=MAX_UPLOAD_FILES
                ),
            )
        try:
            when = _instant(at)
            rendered = _inspect(
                uploads, engine, country=country, at=when, language=language, grounds=grounds, today=today
            )
        except (InputError, ConsentgateError) as exc:
            return page(request, language, status=400, chosen=chosen, error=str(exc))
        renderer, outputs = rendered
        token_ = reports.put(outputs)
        links = {name: f"/download/{token_}/{name}" for name in OUTPUT_FILES}
        html = _environment.get_template("serve_report.html").render(
            renderer.context(standalone=False, css="", chart=renderer.chart(), links=links)
        )
        return HTMLResponse(html, headers={"content-language": language})

    @app.get("/download/{token}/{name}")
    def download(token: str, name: str) -> Response:
        files = reports.get(token)
        if files is None or name not in files:
            return PlainTextResponse(
                "This report is no longer kept (reports are kept in memory for 30 minutes);"
                " inspect the archive again.",
                status_code=404,
            )
        return Response(
            files[name],
            media_type=_CONTENT_TYPES[name],
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    return app


def _instant(text: str) -> datetime:
    text = text.strip()
    if not text:
        return now_utc()
    return parse_instant(text, field="date")


def _inspect(
    uploads: list[UploadFile],
    engine: DecisionEngine,
    *,
    country: str,
    at: datetime,
    language: str,
    grounds: str,
    today: datetime | None,
) -> tuple[Renderer, dict[str, str]]:
    """Copy the upload into a temporary folder, inspect it, render; the folder is gone on return."""
    folder = Path(tempfile.mkdtemp(prefix="consentgate-inspect-"))
    try:
        paths: list[Path] = []
        for index, upload in enumerate(uploads):
            name = PurePath(str(upload.filename).replace("\\", "/")).name or f"archive-{index}.zip"
            target = folder / f"{index:02d}-{name}"
            with target.open("wb") as out:
                shutil.copyfileobj(upload.file, out, _COPY_CHUNK)
            paths.append(target)
        try:
            result = inspect_archive(paths, engine=engine, at=at, country=country.strip() or None)
        except InputError as exc:
            # Name the member's own files, not the temporary copies.
            message = str(exc)
            for index, upload in enumerate(uploads):
                copied = str(paths[index]) if index < len(paths) else ""
                if copied:
                    message = message.replace(copied, PurePath(str(upload.filename)).name)
            raise InputError(message.replace(str(folder) + "/", "")) from None
        renderer = Renderer(
            result,
            engine,
            language=language,
            grounds=grounds or None,
            today=None if today is None else today.date(),
        )
        return renderer, renderer.outputs()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for upload in uploads:
            upload.file.close()
