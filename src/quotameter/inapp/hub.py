"""Waking this process's open streams the moment a notice may be waiting, and ending them
when the server stops.

A notice can be recorded by any process, so streams also poll the outbox; the hub only
shortens the wait when this process commits a change that may concern a stream's customer
(a recorded notice, or usage left to evaluate). The wake-up is sent when the connection
goes back to the pool, after its commit, so that the woken stream finds the rows visible.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, event

from quotameter.store.tables import notices, pending_evaluations

_WATCHED = (notices, pending_evaluations)
_WRITTEN = "quotameter.inapp.written"  # customers touched by the open transaction
_COMMITTED = "quotameter.inapp.committed"  # ... and committed, to announce at check-in


class Hub:
    """The open streams of one app, by customer, each an asyncio.Event on its own loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, dict[asyncio.Event, asyncio.AbstractEventLoop]] = {}
        _HUBS.add(self)

    def subscribe(self, customer: str) -> asyncio.Event:
        wake = asyncio.Event()
        with self._lock:
            self._waiting.setdefault(customer, {})[wake] = asyncio.get_running_loop()
        return wake

    def unsubscribe(self, customer: str, wake: asyncio.Event) -> None:
        with self._lock:
            streams = self._waiting.get(customer, {})
            streams.pop(wake, None)
            if not streams:
                self._waiting.pop(customer, None)

    def wake(self, customers: set[str] | None = None) -> None:
        """Wake the streams of these customers (None: all); safe from any thread."""
        with self._lock:
            targets = [(w, loop) for name, streams in self._waiting.items()
                       if customers is None or name in customers for w, loop in streams.items()]
        for w, loop in targets:
            try:
                loop.call_soon_threadsafe(w.set)
            except RuntimeError:  # that loop is closed: its stream is gone
                pass

    def watch(self, engine: Engine) -> None:
        """Wake the streams of the customers whose notices or pending evaluations this
        process's transactions on `engine` commit."""

        def written(conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
            if context is None or not context.isinsert:
                return
            table = getattr(context.compiled.statement, "table", None)
            if table is None or not any(table is t for t in _WATCHED):
                return
            names = {p.get("customer") for p in context.compiled_parameters or ()}
            conn.info.setdefault(_WRITTEN, set()).update(n for n in names if isinstance(n, str))

        def committed(conn: Any) -> None:
            names = conn.info.pop(_WRITTEN, None)
            if names:
                conn.info.setdefault(_COMMITTED, set()).update(names)

        def rolled_back(conn: Any) -> None:
            conn.info.pop(_WRITTEN, None)

        def checked_in(_dbapi_conn: Any, record: Any) -> None:
            names = record.info.pop(_COMMITTED, None) if record is not None else None
            if names:
                self.wake(names)

        event.listen(engine, "after_cursor_execute", written)
        event.listen(engine, "commit", committed)
        event.listen(engine, "rollback", rolled_back)
        event.listen(engine.pool, "checkin", checked_in)


_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()
_STOPPING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def stopping() -> bool:
    """Whether the server running this event loop is shutting down."""
    return asyncio.get_running_loop() in _STOPPING


def end_streams(loop: asyncio.AbstractEventLoop) -> None:
    """End the streams served on `loop`: the server there is stopping."""
    _STOPPING.add(loop)
    for hub in list(_HUBS):
        hub.wake()


def end_streams_when_uvicorn_stops() -> None:
    """uvicorn waits, before the application's own shutdown, for every open response to end,
    and an event stream never would: end them as its shutdown begins. This wraps
    `uvicorn.Server.shutdown`, the one step every way of stopping goes through (a signal in
    `quotameter serve`, a worker told to stop, `server.should_exit` in a thread)."""
    try:
        from uvicorn.server import Server
    except ImportError:  # another server: streams still end when their clients leave
        return
    original = Server.shutdown
    if getattr(original, "_ends_streams", False):
        return

    async def shutdown(self: Server, sockets: Any = None) -> None:
        end_streams(asyncio.get_running_loop())
        await original(self, sockets)

    shutdown._ends_streams = True  # type: ignore[attr-defined]
    Server.shutdown = shutdown  # type: ignore[method-assign]
