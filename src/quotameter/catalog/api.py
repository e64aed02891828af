from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from quotameter.catalog import service
from quotameter.catalog.model import Catalog, CatalogInvalid, catalog_to_json
from quotameter.errors import BadRequest, Invalid
from quotameter.keys.auth import admin_only
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.web import JSON, error_responses, inline_schema, json_body, services


router = APIRouter(tags=["catalog"])


class AppliedOut(BaseModel):
    version: int
    rebuilt_meters: list[str] = Field(description="meters whose totals were recomputed from the events")


class CatalogOut(BaseModel):
    version: int
    meters: dict[str, Any]
    plans: dict[str, Any]
    customers: dict[str, Any]


@router.put("/v1/catalog", response_class=JSON, dependencies=[Depends(admin_only)],
            responses={200: {"model": AppliedOut}, **error_responses(400, 422)},
            openapi_extra=json_body(inline_schema(Catalog), "meters, plans and customers, as in the YAML catalog"))
async def put_catalog(request: Request) -> Any:
    """Replace meters, plans and customers with one document; nothing changes if any part is wrong."""
    svc = services(request)
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"body: not valid JSON ({err})") from None

    def apply() -> service.Applied:
        with unit_of_work(svc.engine) as conn:
            return service.apply(conn, doc, svc.catalogs.current(conn), to_us(svc.now()))

    try:
        applied = await run_in_threadpool(apply)
    except CatalogInvalid as err:
        raise Invalid("catalog: invalid", errors=err.errors) from None
    return JSON({"version": applied.version, "rebuilt_meters": applied.changed_meters})


@router.get("/v1/catalog", response_class=JSON, dependencies=[Depends(admin_only)],
            responses={200: {"model": CatalogOut}})
def get_catalog(request: Request) -> Any:
    svc = services(request)
    with svc.engine.connect() as conn:
        loaded = svc.catalogs.current(conn)
    return JSON({"version": loaded.version, **catalog_to_json(loaded.spec)})
