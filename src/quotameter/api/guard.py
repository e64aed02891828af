"""What a client may make the server hold while it sends a request body: its size and its pauses.

One ASGI middleware in front of every route (wired in `server.py`), so that no endpoint can
forget it, whether FastAPI parses the body or the endpoint reads it by hand:

- a `Content-Length` over `max_body_bytes` is answered 413 before anything is read, so an
  `Expect: 100-continue` client is refused without ever being told to go on (uvicorn sends
  `100 Continue` when the application first asks for the body);
- a body that grows past the limit while it arrives (chunked, or longer than announced) is
  cut off with 413 at that moment;
- a body that pauses for `body_timeout` seconds is answered 408;
- a client that leaves half-way is one line in the log, not an error;
- an answer given before the whole body arrived closes the connection, rather than leave
  the server reading (and dropping) whatever the client still sends.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotameter.api.web import JSON

log = logging.getLogger("quotameter.http")

CLOSE = {"Connection": "close"}


class BodyRefused(HTTPException):
    """Raised from `receive`: the body may not be read on. An HTTPException, because FastAPI
    turns any other error met while it parses a body into a 400, and passes these through to
    the handler in `server.py`, which answers them in the one error shape (the guard adds
    `Connection: close`: the rest of the body is never read)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)


def declared_length(headers: Headers) -> int | None:
    """The request's `Content-Length`, if it has a valid one."""
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def announces_body(headers: Headers) -> bool:
    """Whether the request says a body follows (chunked, or a length above zero)."""
    return "transfer-encoding" in headers or bool(declared_length(headers))


def has_body(scope: Scope) -> bool:
    return announces_body(Headers(scope=scope))


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = declared_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            refused = JSON(
                {
                    "error": f"body: {declared} bytes is over the limit of {self.max_body_bytes} "
                    "bytes"
                },
                status_code=413,
                headers=CLOSE,
            )
            await refused(scope, receive, send)
            return
        body = _Body(self, scope, receive, declared, announces_body(headers))

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and body.pending:
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"connection", b"close")],
                }
            await send(message)

        try:
            await self.app(scope, body.receive, closing_send)
        except ClientDisconnect:
            if not body.left:
                raise
            # Already logged, in one line, when the client left: nothing is wrong with the server.


class _Body:
    """The body of one request as the application receives it: counted and timed."""

    def __init__(
        self,
        guard: RequestGuard,
        scope: Scope,
        receive: Receive,
        declared: int | None,
        announced: bool,
    ) -> None:
        self.guard, self.scope, self._receive, self.declared = guard, scope, receive, declared
        self.pending = announced  # bytes of the body may still come
        self.received = 0
        self.left = False  # the client disconnected before its body was complete

    async def receive(self) -> Message:
        if not self.pending:
            return await self._receive()
        limit, timeout = self.guard.max_body_bytes, self.guard.body_timeout
        try:
            async with asyncio.timeout(timeout):
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(
                408,
                f"body: nothing arrived for {timeout:g} s after {self.received} bytes; "
                "send the body without pausing",
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > limit:
                raise BodyRefused(413, f"body: over the limit of {limit} bytes")
            self.pending = bool(message.get("more_body", False))
        elif message["type"] == "http.disconnect":
            self.pending, self.left = False, True
            log.info(
                "client left before the end of its body: %s %s (%s bytes announced, %d received)",
                self.scope["method"],
                self.scope["path"],
                "no length" if self.declared is None else self.declared,
                self.received,
            )
        return message
