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

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from quotameter.api.auth import reads_customer
from quotameter.api.web import error_responses, services
from quotameter.inapp import service, stream
from quotameter.inapp.hub import Hub, end_streams_when_uvicorn_stops
from quotameter.keys.service import Principal
from quotameter.notice_kinds import NoticeKind
from quotameter.settings import Settings

router = APIRouter(tags=["notifications"])
end_streams_when_uvicorn_stops()

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
    last = last_event_id if last_event_id is not None else after
    return await respond(request, customer, who.key_id, last, every, max_seconds, "no-cache")


async def respond(
    request: Request,
    customer: str,
    key_id: str,
    last: int | None,
    every: bool,
    max_seconds: float | None,
    cache_control: str,
) -> StreamingResponse:
    """A customer's stream of notices after `last` (None: after the newest now), for the
    holder of `key_id` (it ends when that key is revoked): the API's, and the console's."""
    svc = services(request)
    state = await run_in_threadpool(
        service.opening, svc.engine, svc.catalogs, customer, svc.now
    )  # 404 for a stranger
    if last is None:
        last = await run_in_threadpool(service.latest_id, svc.engine, customer)
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    events = stream.events(
        stream.Source(svc.engine, svc.catalogs, svc.now),
        _hub(request),
        customer,
        key_id,
        last,
        every,
        state,
        settings,
        max_seconds,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": cache_control, "X-Accel-Buffering": "no"},
    )


def _hub(request: Request) -> Hub:
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    svc = services(request)
    return stream.hub_of(request.app.state, svc.engine, settings, svc.keys.ttl)
