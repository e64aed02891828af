from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from quotameter.api.auth import admin_only
from quotameter.api.web import JSON, Instant, Text, error_responses, services
from quotameter.keys import service
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us

router = APIRouter(tags=["keys"], dependencies=[Depends(admin_only)])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked by the service, which names the roles in its error; the schema lists them too.
    role: str = Field(
        description="admin, ingest or customer",
        json_schema_extra={"enum": list(service.ROLES)},
        examples=["ingest"],
    )
    customer: str | None = Field(default=None, description="the customer a 'customer' key reads")
    label: Text | None = Field(default=None, max_length=256)


class KeyOut(BaseModel):
    id: str
    role: str
    customer: str | None
    label: str | None
    created_at: Instant
    revoked_at: Instant | None


class NewKeyOut(KeyOut):
    key: str = Field(description="the key itself, shown this once")


class KeysOut(BaseModel):
    keys: list[KeyOut]


@router.post(
    "/v1/keys",
    response_class=JSON,
    status_code=201,
    responses={201: {"model": NewKeyOut}, **error_responses(400, 404, 422)},
)
def create_key(body: KeyRequest, request: Request) -> Any:
    """A new key. The answer holds the key itself: it is shown this once, and stored only as a
    digest."""
    svc = services(request)
    with unit_of_work(svc.engine) as conn:
        known = svc.catalogs.current(conn).spec.customers
        view, secret = service.create(
            conn, body.role, body.customer, body.label, to_us(svc.now()), known
        )
    return JSON({**view, "key": secret}, status_code=201)


@router.get("/v1/keys", response_class=JSON, responses={200: {"model": KeysOut}})
def list_keys(request: Request) -> Any:
    """Every key, revoked ones included (never the key itself)."""
    svc = services(request)
    with svc.engine.connect() as conn:
        return JSON({"keys": service.listing(conn)})


@router.delete(
    "/v1/keys/{key_id}",
    response_class=JSON,
    responses={200: {"model": KeyOut}, **error_responses(404)},
)
def revoke_key(key_id: str, request: Request) -> Any:
    svc = services(request)
    with unit_of_work(svc.engine) as conn:
        view = service.revoke(conn, key_id, to_us(svc.now()))
    svc.keys.forget()
    return JSON(view)
