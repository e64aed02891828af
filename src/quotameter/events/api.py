from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from quotameter.errors import BadRequest, PayloadTooLarge
from quotameter.events.model import CloudEvent
from quotameter.events.service import IngestResult, prepare, store
from quotameter.keys.auth import may_ingest
from quotameter.store.engine import retry_transient, unit_of_work
from quotameter.timeutil import to_us
from quotameter.web import JSON, Services, error_responses, inline_schema, json_body, services


router = APIRouter(tags=["events"])


class RejectedOut(BaseModel):
    index: int
    error: str


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedOut]


_EVENT = inline_schema(CloudEvent)
_EVENT["examples"] = [{"specversion": "1.0", "id": "e1", "source": "app", "type": "media.activity", "subject": "acme",
                       "time": "2026-03-10T09:00:00Z",
                       "data": {"user": "u1", "stream": "u1/mic", "kind": "mic", "action": "start"}}]


@router.post("/v1/events", response_class=JSON, dependencies=[Depends(may_ingest)],
             responses={200: {"model": IngestOut}, **error_responses(400, 413)},
             openapi_extra=json_body({"oneOf": [_EVENT, {"type": "array", "items": _EVENT}]},
                                     "one CloudEvent, or an array of them"))
async def post_events(request: Request) -> Any:
    """One CloudEvent or an array of them (also `application/cloudevents-batch+json`).

    The answer comes after the accepted events are committed.
    """
    svc = services(request)
    body = await request.body()  # at most max_body_bytes: the guard in server.py cuts a longer one off
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"body: not valid JSON ({err})") from None
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > svc.max_batch:
        raise PayloadTooLarge(f"body: {len(items)} events is over the batch limit of {svc.max_batch}")
    result = await run_in_threadpool(_ingest, svc, items)
    if result.accepted:
        svc.evaluate_soon.set()
    return JSON(result.as_dict())


@retry_transient
def _ingest(svc: Services, items: list[Any]) -> IngestResult:
    received = to_us(svc.now())
    # Checking the batch needs no lock: it happens before the write transaction opens, with
    # the catalog this process knows, and again in the transaction if a newer one is in force.
    catalog = svc.catalogs.last_known
    prepared = prepare(catalog, items, received)
    with unit_of_work(svc.engine) as conn:
        in_force = svc.catalogs.current(conn)
        if in_force.version != catalog.version:  # a catalog was applied meanwhile: check again
            catalog, prepared = in_force, prepare(in_force, items, received)
        return store(conn, catalog, prepared)
