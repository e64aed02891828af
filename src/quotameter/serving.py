"""How `quotameter serve` meets the network: uvicorn, with a deadline for request headers.

uvicorn closes a keep-alive connection that stays idle, but it has no timeout for the headers
of a request: its idle timer stops at the first byte received, so a client that opens
connections and sends their headers a byte at a time, or never finishes them, holds each one
for as long as it likes. The protocols below close a connection whose request headers are not
complete `header_timeout` seconds after it opened or after its previous answer was sent.
(Bodies have their own timeout, in `guard.py`: the application is waiting for them.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from quotameter.settings import Settings

log = logging.getLogger("quotameter.http")


class _HeaderDeadline(asyncio.Protocol):
    """Mixed into uvicorn's HTTP protocols, which both keep the request being answered in
    `self.cycle` and call `on_response_complete` after each answer."""

    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of the awaited request arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._answering():
            self._headers_arrived()
        else:
            self._partial = True

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # why: both protocols have it
        if self._answering():  # a pipelined request was waiting, whole
            self._headers_arrived()
        else:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _answering(self) -> bool:
        """Whether a request's headers are all in and its answer is not complete yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _await_headers(self) -> None:
        if self._deadline is None and not self.transport.is_closing():
            self._partial = False
            self._deadline = self.loop.call_later(self.header_timeout, self._too_late)

    def _headers_arrived(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_late(self) -> None:
        self._deadline = None
        if (
            self._answering()
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        ):
            return  # answering, already closing, or upgraded to a WebSocket
        if (
            self._partial
        ):  # an idle connection is closed quietly, like uvicorn's keep-alive timeout does
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info(
                "closed the connection of %s: its request headers were not complete within %g s",
                client,
                self.header_timeout,
            )
        self.transport.close()


class H11WithHeaderDeadline(_HeaderDeadline, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn's "auto" serves with h11, and so do we
    AUTO: type[_HeaderDeadline] = H11WithHeaderDeadline
else:

    class HttpToolsWithHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
        pass

    AUTO = HttpToolsWithHeaderDeadline


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options every server of this app is started with (`quotameter serve`, with
    one process or several, and the tests' servers)."""
    # A partial of a module-level class: it is pickled for each worker process of `--workers`.
    http = functools.partial(AUTO, header_timeout=settings.header_timeout_seconds)
    return {"host": settings.host, "port": settings.port, "http": http}
