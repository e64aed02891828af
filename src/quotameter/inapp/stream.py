"""One customer's in-app notices as server-sent events: what the API's notification stream
and the console's live banner both send.

The stream first says `retry:` and sends `event: state` (no id): the customer's access per
feature now. Then each in-app notice (or every notice, with `every`) recorded after id
`last` is one event: `id:` the notice id, `event:` its type, `data:` the notice as JSON.
A `: keep-alive` comment goes out when nothing was sent for `inapp_heartbeat_seconds`.
The stream ends when the client leaves, the server stops, after `max_seconds` or
`inapp_max_stream_seconds`, or when the hub finds the key it was opened with revoked.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine

from quotameter.catalog.service import CatalogCache
from quotameter.inapp import service
from quotameter.inapp.hub import Hub, stopping
from quotameter.jsontext import dumps
from quotameter.settings import Settings
from quotameter.store.engine import patiently

RETRY_MS = 1000  # how long a disconnected EventSource waits before it reconnects


def frame(event: str, data: Any, id: int | None = None) -> bytes:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + dumps(data) + b"\n\n"


def hub_of(state: Any, engine: Engine, settings: Settings, key_ttl: float) -> Hub:
    """The app's one hub (on `app.state`), made by the first stream that opens."""
    hub: Hub | None = getattr(state, "inapp_hub", None)
    if hub is None:
        hub = state.inapp_hub = Hub(engine, settings.inapp_poll_seconds, key_ttl)
    return hub


@dataclass(frozen=True)
class Source:
    """Where a stream reads: the database, the catalogs and the service's clock."""

    engine: Engine
    catalogs: CatalogCache
    clock: Callable[[], datetime]


async def events(
    src: Source,
    hub: Hub,
    customer: str,
    key_id: str,
    last: int,
    every: bool,
    state: dict[str, Any],
    settings: Settings,
    max_seconds: float | None,
) -> AsyncIterator[bytes]:
    """Read the outbox whenever the hub wakes the stream (see hub.py), and send a keep-alive
    comment when nothing was sent for a while. Ends when the client leaves (Starlette
    cancels it), the server stops, after `max_seconds` or `inapp_max_stream_seconds`, or
    when the hub finds its key revoked."""
    wake = hub.subscribe(customer, key_id)
    clock = asyncio.get_running_loop().time  # pacing only; the notices carry their own instants
    beat = settings.inapp_heartbeat_seconds
    now = clock()
    # Real time, like the pacing: the service clock is the domain's, which tests and replays move.
    deadline = now + min(
        settings.inapp_max_stream_seconds, math.inf if max_seconds is None else max_seconds
    )
    next_beat = now + beat
    try:
        yield f"retry: {RETRY_MS}\n".encode() + frame("state", state)
        while True:
            wake.clear()  # before reading: a commit while we read wakes the next wait
            if hub.revoked(wake):  # not one more notice for a revoked key
                return
            # The stream is answered already: no 503 to give, its reads wait their turn.
            sent, last, more = await to_thread.run_sync(
                patiently, service.after, src.engine, src.catalogs, customer, src.clock, last, every
            )
            for notice in sent:
                yield frame(notice["type"], notice, notice["id"])
            if sent:
                next_beat = clock() + beat
            if more:
                continue
            now = clock()
            if stopping() or now >= deadline:
                return
            if now >= next_beat:
                yield b": keep-alive\n\n"
                next_beat = now + beat
            with suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(next_beat - now, deadline - now))
    finally:
        hub.unsubscribe(customer, wake)
