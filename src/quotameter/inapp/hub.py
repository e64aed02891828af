"""Waking this process's open streams the moment a notice may be waiting, and ending them
when the server stops.

Two ways a stream learns that it has something to read, neither of them a query per stream:
- this process commits a change that may concern its customer (a recorded notice, or usage
  left to evaluate): the wake-up is sent when the connection goes back to the pool, after
  its commit, so that the woken stream finds the rows visible;
- another process recorded it: one thread per process (running while any stream is open)
  asks every `poll` seconds, in one query for all open streams' customers, whose newest
  notice or pending evaluation is new, and wakes those.

The same thread asks, in one query for all open streams, which of their keys were revoked
(here or by another process), at least every `key_check` seconds (the key cache's interval,
after which every process refuses such a key), and ends their streams.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine

from quotameter.keys.service import revoked_among
from quotameter.notifications import service as notices

log = logging.getLogger("quotameter.inapp")


class Hub:
    """The open streams of one app, by customer, each an asyncio.Event on its own loop."""

    def __init__(self, engine: Engine, poll: float, key_check: float | None = None) -> None:
        self.engine, self.poll = engine, poll
        self.key_check = poll if key_check is None else key_check
        self._lock = threading.Lock()
        self._waiting: dict[str, dict[asyncio.Event, asyncio.AbstractEventLoop]] = {}
        self._key_of: dict[asyncio.Event, str] = {}  # the key each stream was opened with
        self._revoked: set[asyncio.Event] = (
            set()
        )  # streams whose key was revoked: they end when woken
        self._poller: threading.Thread | None = None
        _HUBS.add(self)
        self.watch(engine)

    def subscribe(self, customer: str, key_id: str | None = None) -> asyncio.Event:
        wake = asyncio.Event()
        with self._lock:
            self._waiting.setdefault(customer, {})[wake] = asyncio.get_running_loop()
            if key_id is not None:
                self._key_of[wake] = key_id
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="quotameter-inapp-poll", daemon=True
                )
                self._poller.start()
        return wake

    def unsubscribe(self, customer: str, wake: asyncio.Event) -> None:
        with self._lock:
            streams = self._waiting.get(customer, {})
            streams.pop(wake, None)
            if not streams:
                self._waiting.pop(customer, None)
            self._key_of.pop(wake, None)
            self._revoked.discard(wake)

    def revoked(self, wake: asyncio.Event) -> bool:
        """Whether the key this stream was opened with was revoked: the stream must end."""
        return wake in self._revoked

    def wake(self, customers: set[str] | None = None) -> None:
        """Wake the streams of these customers (None: all); safe from any thread."""
        with self._lock:
            targets = [
                (w, loop)
                for name, streams in self._waiting.items()
                if customers is None or name in customers
                for w, loop in streams.items()
            ]
        for w, loop in targets:
            with suppress(RuntimeError):  # that loop is closed: its stream is gone
                loop.call_soon_threadsafe(w.set)

    def _poll(self) -> None:
        """Until no stream is open: wake the streams of customers with a notice or a pending
        evaluation that another process committed, and end those whose key was revoked."""
        seen: dict[str, int] = {}  # the newest notice id woken for, per customer
        pause = threading.Event()
        while True:
            with self._lock:
                customers = sorted(self._waiting)
                if not customers:
                    self._poller = None
                    return
                keys = set(self._key_of.values())
            try:
                newest, pending, revoked = _changes(self.engine, customers, keys)
            except Exception:
                log.exception("in-app poll failed")
            else:
                woken = {c for c, top in newest.items() if top > seen.get(c, 0)} | pending
                seen.update(newest)
                if woken:
                    self.wake(woken)
                if revoked:
                    self._end_streams_of(revoked)
            pause.wait(min(self.poll, self.key_check))

    def _end_streams_of(self, keys: set[str]) -> None:
        with self._lock:
            ending = [
                (w, loop)
                for streams in self._waiting.values()
                for w, loop in streams.items()
                if self._key_of.get(w) in keys
            ]
            self._revoked.update(w for w, _ in ending)
        for w, loop in ending:
            with suppress(RuntimeError):  # that loop is closed: its stream is gone
                loop.call_soon_threadsafe(w.set)

    def watch(self, engine: Engine) -> None:
        """Wake the streams of the customers whose notices or pending evaluations this
        process's transactions on `engine` commit."""
        notices.on_commit(engine, self.wake, owed=True)


def _changes(
    engine: Engine, customers: list[str], keys: set[str]
) -> tuple[dict[str, int], set[str], set[str]]:
    """Per customer its newest notice id, which have usage left to evaluate, and which of
    the streams' keys were revoked."""
    with engine.connect() as conn:
        newest = notices.newest_ids(conn, customers)
        pending = notices.pending_among(conn, customers)
        revoked = revoked_among(conn, keys)
    return newest, pending, revoked


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

    shutdown._ends_streams = True  # type: ignore[attr-defined]  # why: a mark on a function object
    Server.shutdown = shutdown  # type: ignore[method-assign]  # why: uvicorn has no shutdown hook
