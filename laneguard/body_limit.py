"""A cap on request bodies, applied at the ASGI level before anything else reads a byte.

Checking ``Content-Length`` inside a route is not enough: a chunked request has none, a framework
may have read (or spooled a multipart upload of) the whole body before the route runs, and an
unauthenticated client can make the server hold it all before it is told 401. This middleware
sits outside the application: a declared length over the cap is answered 413 without reading
the body; otherwise it counts the bytes as they stream in, and the moment they pass the cap
the application is told the client went away (it stops reading) and the client gets 413.
Nothing over the cap is ever held in memory or on disk.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """``app`` with request bodies capped: ``default_bytes`` everywhere, or the cap of the
    longest matching path prefix in ``caps`` (e.g. ``[("/api/v1/ingest", 32 << 20)]``)."""

    def __init__(
        self, app: ASGIApp, default_bytes: int, caps: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.caps = sorted(caps, key=lambda cap: -len(cap[0]))

    def cap_for(self, path: str) -> int:
        return next((n for prefix, n in self.caps if path.startswith(prefix)), self.default_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _too_large(send, f"request body is {declared} bytes; at most {cap} here")
            return
        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the application's answer to a cut-off body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _too_large(send, f"request body is over {cap} bytes, the most allowed here")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
