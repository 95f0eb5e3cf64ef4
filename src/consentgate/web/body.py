"""A limit on request bodies, for every route: a 413 before the body is parsed, not a 422 after.

``Content-Length`` above the limit is answered at once; a body without one (chunked) is counted as
it arrives and answered with 413 as soon as it passes the limit (the app then sees the client
leave), unless the answer has already started. The portal's limit is
``PortalConfig.max_body_bytes`` (``serve --max-body``, default 1 MiB: the largest form, an
objection's grounds, is 5,000 characters).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 1 << 20


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server refuses a malformed length itself
            if too_large:
                await self._refuse(scope, send)
                return
        seen = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            # Past the limit the 413 is sent at once and the app is told the client went away, so
            # that no framework turns the cut-off body into a 400 of its own.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if not started:
                        refused = True
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit = f"{self.max_bytes:,} bytes"
        if str(scope.get("path", "")).startswith("/api/"):
            body = json.dumps(
                {"type": "about:blank", "title": "Content Too Large", "status": 413,
                 "detail": f"the request body is larger than the limit of {limit}"}
            ).encode()  # fmt: skip
            media = b"application/problem+json"
        else:
            body = f"The request is larger than this server takes ({limit}).".encode()
            media = b"text/plain; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", media),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
