from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from quotameter.errors import Invalid, PayloadTooLarge
from quotameter.events.service import IngestResult, ingest
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.web import JSON, services

router = APIRouter(tags=["events"])


@router.post("/v1/events", response_class=JSON)
async def post_events(request: Request) -> Any:
    """One CloudEvent or an array of them (also `application/cloudevents-batch+json`).

    The answer comes after the accepted events are committed.
    """
    svc = services(request)
    body = await request.body()
    if len(body) > svc.max_body_bytes:
        raise PayloadTooLarge(f"body: {len(body)} bytes is over the limit of {svc.max_body_bytes}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Invalid(f"body: not valid JSON ({err})") from None
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > svc.max_batch:
        raise PayloadTooLarge(f"body: {len(items)} events is over the batch limit of {svc.max_batch}")

    def run() -> IngestResult:
        with unit_of_work(svc.engine) as conn:
            return ingest(conn, svc.catalogs.current(conn), items, to_us(svc.now()))

    return JSON((await run_in_threadpool(run)).as_dict())
