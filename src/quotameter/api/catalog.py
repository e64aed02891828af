from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from quotameter.api.auth import admin_only, caller
from quotameter.api.web import JSON, error_responses, inline_schema, json_body, services
from quotameter.catalog import service
from quotameter.catalog.model import Catalog, CatalogInvalid, catalog_to_json
from quotameter.catalog.schema import catalog_schema
from quotameter.errors import BadRequest, Invalid
from quotameter.store.engine import lock_keys, unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import catalog as use_catalog
from quotameter.wording import plural

router = APIRouter(tags=["catalog"])


class ChangesOut(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[str]


class DiffOut(BaseModel):
    meters: ChangesOut
    plans: ChangesOut
    customers: ChangesOut


class AppliedOut(BaseModel):
    version: int = Field(description="the catalog's version (a dry run: the version it would get)")
    rebuilt_meters: list[str] = Field(
        description="meters whose totals were (would be) recomputed from the events"
    )
    changes: DiffOut = Field(description="meters, plans and customers added, removed or changed")
    dropped_with_records: dict[str, dict[str, int]] = Field(
        description="customers left out that have records, with how many of each kind (events, "
        "keys, invoices, "
        "grants, seat_changes, plan_changes, notices, settings_changes): dropped with prune=true "
        "(their records are kept), refused (409) without"
    )
    dry_run: bool = Field(description="true: nothing was applied")
    refused: bool = Field(
        description="a dry run: whether applying would be refused (409) for lack of prune=true"
    )


class CatalogOut(BaseModel):
    version: int
    meters: dict[str, Any]
    plans: dict[str, Any]
    customers: dict[str, Any]


@router.put(
    "/v1/catalog",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={200: {"model": AppliedOut}, **error_responses(400, 409, 422)},
    openapi_extra=json_body(
        inline_schema(Catalog), "meters, plans and customers, as in the YAML catalog"
    ),
)
async def put_catalog(
    request: Request,
    prune: bool = Query(
        False,
        description="drop customers the document leaves out even if they have records "
        "(events, keys, invoices, …); without it such a catalog is refused (409)",
    ),
    dry_run: bool = Query(
        False, description="validate and answer what would change; apply nothing"
    ),
) -> Any:
    """Replace meters, plans and customers with one document; nothing changes if any part is
    wrong (422, every error listed) or if it leaves out customers with records without
    `prune=true` (409, each such customer named with what it has)."""
    svc = services(request)
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"body: not valid JSON ({err})") from None

    def apply() -> service.Applied:
        with unit_of_work(svc.engine) as conn:
            # Applies take turns (on SQLite every writer does): each numbers its version after
            # the last committed one, where two at once would both take the same (a 500).
            lock_keys(conn, ["catalog"])
            return use_catalog.apply(
                conn,
                doc,
                svc.catalogs.current(conn),
                to_us(svc.now()),
                prune=prune,
                dry_run=dry_run,
            )

    try:
        applied = await run_in_threadpool(apply)
    except CatalogInvalid as err:
        raise Invalid("catalog: invalid", errors=err.errors) from None
    return JSON(applied_json(applied))


def applied_json(applied: service.Applied) -> dict[str, Any]:
    return {
        "version": applied.version,
        "rebuilt_meters": applied.changed_meters,
        "changes": applied.diff.as_dict(),
        "dropped_with_records": {
            customer: {plural(kind).replace(" ", "_"): n for kind, n in kinds.items()}
            for customer, kinds in sorted(applied.dropped.items())
        },
        "dry_run": not applied.applied,
        "refused": applied.refused,
    }


@router.get(
    "/v1/catalog",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={200: {"model": CatalogOut}},
)
def get_catalog(request: Request) -> Any:
    svc = services(request)
    with svc.engine.connect() as conn:
        loaded = svc.catalogs.current(conn)
    return JSON({"version": loaded.version, **catalog_to_json(loaded.spec)})


class SchemaJSON(JSON):
    media_type = "application/schema+json"


# The errors of an endpoint answering SchemaJSON: still `application/json`, in the one shape
# (a `model` would take the endpoint's media type).
_JSON_ERRORS = {
    status: {
        "description": answer["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, answer in error_responses(401, 403, 503).items()
}


@router.get(
    "/v1/catalog/schema",
    response_class=SchemaJSON,
    dependencies=[Depends(caller)],
    responses={
        200: {
            "description": "the catalog's JSON Schema (draft 2020-12)",
            "content": {SchemaJSON.media_type: {"schema": {"type": "object"}}},
        },
        **_JSON_ERRORS,
    },
)
def get_catalog_schema() -> Any:
    """The JSON Schema of a catalog document, as in docs/catalog.schema.json, for editors and
    tools that check a catalog before applying it. Any valid key may read it (admin, ingest
    or customer): it describes the format only and says nothing about meters, plans or
    customers."""
    return SchemaJSON(catalog_schema())
