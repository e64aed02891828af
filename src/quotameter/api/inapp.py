"""GET /v1/customers/{customer}/notifications/stream: the notices addressed in-app, as
server-sent events, the moment they are recorded.

Each notice is one event: `id:` the notice id, `event:` its type, `data:` the notice as
`GET …/notifications` lists it. The stream first says `retry:` and sends `event: state` (no
id): the customer's access per feature now. Then it sends every in-app notice (access
blocked or restored; with `?all=true` every notice) recorded after the id in the
`Last-Event-ID` header (sent by a reconnecting EventSource), else after `?after=`, else after
the newest one when it opened. A `: keep-alive` comment goes out when nothing was sent for
`inapp_heartbeat_seconds`.

A stream ends after `inapp_max_stream_seconds` (the client reconnects with `Last-Event-ID`
and misses nothing), and within `key_cache_seconds` of the revocation of the key it was
opened with (its reconnection is then refused, like any request with that key).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from quotameter.api.auth import reads_customer
from quotameter.api.web import Services, dumps, error_responses, services
from quotameter.inapp import service
from quotameter.inapp.hub import Hub, end_streams_when_uvicorn_stops, stopping
from quotameter.keys.service import Principal
from quotameter.notice_kinds import NoticeKind
from quotameter.settings import Settings
from quotameter.store.engine import patiently

router = APIRouter(tags=["notifications"])
end_streams_when_uvicorn_stops()

RETRY_MS = 1000  # how long a disconnected EventSource waits before it reconnects
MAX_ID = 2**63 - 1
# Before OpenAPI 3.2, the `schema` of text/event-stream describes one event.
_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "description": "the notice id (none on `state`)"},
        "event": {
            "type": "string",
            "description": "`state`, or the notice type",
            "examples": [NoticeKind.ACCESS_BLOCKED.value],
        },
        "data": {
            "type": "string",
            "description": "JSON: the notice as `GET …/notifications` lists it; on `state`, "
            "has_access per feature",
        },
        "retry": {"type": "integer", "description": "milliseconds to wait before reconnecting"},
    },
}
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `state`, then each notice as it is recorded.",
        "content": {"text/event-stream": {"schema": _EVENT}},
    }
}


def frame(event: str, data: Any, id: int | None = None) -> bytes:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + dumps(data) + b"\n\n"


@router.get(
    "/v1/customers/{customer}/notifications/stream",
    response_class=StreamingResponse,
    responses={**_STREAM, **error_responses(404, 422)},
)
async def stream_notices(
    request: Request,
    customer: str,
    who: Principal = Depends(reads_customer),
    every: bool = Query(
        False, alias="all", description="every notice, not only those addressed in-app"
    ),
    after: int | None = Query(
        None,
        ge=0,
        le=MAX_ID,
        description="send the notices after this id "
        "(the Last-Event-ID header wins); without either, those from now on",
    ),
    max_seconds: float | None = Query(
        None,
        ge=0,
        le=86_400,
        description="end the stream after this long "
        "(0: send what is waiting and end); the client reconnects",
    ),
    last_event_id: int | None = Header(
        None,
        alias="Last-Event-ID",
        ge=0,
        le=MAX_ID,
        description="the id of the last event received: resume after it",
    ),
) -> StreamingResponse:
    """The customer's in-app notices as server-sent events, the moment they are recorded."""
    svc = services(request)
    state = await run_in_threadpool(
        service.opening, svc.engine, svc.catalogs, customer, svc.now
    )  # 404 for a stranger
    last = last_event_id if last_event_id is not None else after
    if last is None:
        last = await run_in_threadpool(service.latest_id, svc.engine, customer)
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    events = _events(
        svc, _hub(request), customer, who.key_id, last, every, state, settings, max_seconds
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _hub(request: Request) -> Hub:
    hub: Hub | None = getattr(request.app.state, "inapp_hub", None)
    if hub is None:
        settings: Settings = getattr(request.app.state, "settings", None) or Settings()
        svc = services(request)
        hub = request.app.state.inapp_hub = Hub(
            svc.engine, settings.inapp_poll_seconds, svc.keys.ttl
        )
    return hub


async def _events(
    svc: Services,
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
            sent, last, more = await run_in_threadpool(
                patiently, service.after, svc.engine, svc.catalogs, customer, svc.now, last, every
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
