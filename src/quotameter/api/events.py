from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from quotameter.api.auth import may_ingest
from quotameter.api.web import JSON, Services, error_responses, inline_schema, services
from quotameter.context import Context
from quotameter.errors import Overloaded, PayloadTooLarge
from quotameter.events.binding import BATCH, STRUCTURED, events_of
from quotameter.events.binding import JSON as JSON_TYPE
from quotameter.events.model import CloudEvent
from quotameter.store.engine import busy, retry_transient, unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases.record import IngestResult, Prepared, prepare, store

router = APIRouter(tags=["events"])


class RejectedOut(BaseModel):
    index: int
    error: str


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedOut]


# The event's schema is a named component (see `with_event_schema`), so that client generators
# make one CloudEvent class for the three media types. `application/json` also takes an array;
# it is described as one event because openapi-python-client (0.29) writes a client that fails
# (isinstance with list[...]) when several media types of one body may be arrays.
_EVENT_REF = {"$ref": "#/components/schemas/CloudEvent"}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "One CloudEvent, or an array of them (as `application/json` too). In CloudEvents "
            "binary mode "
            "(a `ce-specversion` header) the attributes are `ce-` headers and the body is the "
            "event's "
            "`data`, a JSON object."
        ),
        "content": {
            JSON_TYPE: {"schema": _EVENT_REF},
            STRUCTURED: {"schema": _EVENT_REF},
            BATCH: {"schema": {"type": "array", "items": _EVENT_REF}},
        },
    }
}
# Binary mode, described: the attributes as headers (any other `ce-` header is an extension).
_BINARY_HEADERS = [
    {
        "name": f"ce-{attribute}",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"CloudEvents binary mode: the event's `{attribute}`, percent-encoded; "
        "the body is then its `data`" + (" (RFC 3339)" if attribute == "time" else ""),
    }
    for attribute in ("specversion", "id", "source", "type", "subject", "time")
]
_BODY["parameters"] = _BINARY_HEADERS
_EXAMPLE = {
    "specversion": "1.0",
    "id": "e1",
    "source": "app",
    "type": "media.activity",
    "subject": "acme",
    "time": "2026-03-10T09:00:00Z",
    "data": {"user": "u1", "stream": "u1/mic", "kind": "mic", "action": "start"},
}


def with_event_schema(make_document: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The served document with `components/schemas/CloudEvent`, which the body above refers to."""

    def document() -> dict[str, Any]:
        doc = make_document()  # built once and kept by FastAPI: this addition is idempotent
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        if "CloudEvent" not in schemas:
            schemas["CloudEvent"] = {**inline_schema(CloudEvent), "examples": [_EXAMPLE]}
        return doc

    return document


@router.post(
    "/v1/events",
    response_class=JSON,
    dependencies=[Depends(may_ingest)],
    responses={200: {"model": IngestOut}, **error_responses(400, 413, 415)},
    openapi_extra=_BODY,
)
async def post_events(request: Request) -> Any:
    """One CloudEvent or an array of them, as `application/json`, `application/cloudevents+json`
    (one event), `application/cloudevents-batch+json` (an array) or in CloudEvents binary mode.

    The answer comes after the accepted events are committed.
    """
    svc = services(request)
    body = (
        await request.body()
    )  # at most max_body_bytes: the guard in server.py cuts a longer one off
    items = events_of(request.headers.raw, body)
    if len(items) > svc.max_batch:
        raise PayloadTooLarge(
            f"body: {len(items)} events is over the batch limit of {svc.max_batch}"
        )
    result = await run_in_threadpool(_ingest, svc, items)
    if result.accepted:
        svc.evaluate_soon.set()
    return JSON(result.as_dict())


def _ingest(svc: Services, items: list[Any]) -> IngestResult:
    received = to_us(svc.now())
    # Checking the batch needs no lock: it happens before the write transaction opens, with
    # the catalog this process knows, and again in the transaction if a newer one is in force.
    prepared = prepare(svc.catalogs.last_known, items, received)
    return svc.ingests.submit((items, prepared), partial(_store_group, svc), alone=_alone)


def _alone(err: BaseException) -> bool:
    """Whether a group that failed with `err` is stored again batch by batch: not when the
    database was busy (nothing was stored, and each batch would only wait again)."""
    return not (isinstance(err, Overloaded) or busy(err))


@retry_transient
def _store_group(svc: Services, group: Sequence[tuple[list[Any], Prepared]]) -> list[IngestResult]:
    """Batches queued for the write lock, stored in one transaction (see store.group)."""
    with unit_of_work(svc.engine) as conn:
        in_force = svc.catalogs.current(conn)
        results = []
        for items, prepared in group:
            if (
                prepared.catalog_version != in_force.version
            ):  # a catalog was applied meanwhile: check again
                prepared = prepare(in_force, items, prepared.received_us)
            results.append(store(Context(conn, in_force), prepared))
        return results
