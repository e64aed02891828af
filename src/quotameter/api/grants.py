from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from quotameter.api.auth import admin_only, reads_customer
from quotameter.api.web import (
    JSON,
    Instant,
    Number,
    Quantity,
    Text,
    error_responses,
    instant,
    services,
)
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.errors import NotFound
from quotameter.grants import service
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import customers as use_customers
from quotameter.usecases import grants as use_grants

router = APIRouter(tags=["grants"])


class TopupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str = Field(examples=["media"])
    blocks: int = Field(ge=1, le=1_000_000, examples=[1])
    id: Text = Field(min_length=1, max_length=200, examples=["purchase-1"])
    effective_at: Instant | None = None


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str = Field(examples=["media"])
    amount: Quantity = Field(examples=[100])
    id: Text = Field(min_length=1, max_length=200, examples=["purchase-1"])
    rollover: bool = False
    effective_at: Instant | None = None


class GrantOut(BaseModel):
    id: str
    feature: str
    kind: str = Field(description="topup or credit")
    amount: Number
    blocks: int | None
    price: str | None = Field(description="what the top-up costs, in the plan's currency")
    rollover: bool
    effective_at: Instant
    expires_at: Instant


class GrantedOut(GrantOut):
    created: bool = Field(description="false: this `id` was granted before, and this is that grant")


class GrantsOut(BaseModel):
    grants: list[GrantOut]


_GRANTED = {
    201: {"model": GrantedOut, "description": "Granted."},
    200: {
        "model": GrantedOut,
        "description": "Already granted under this `id`: the grant as recorded.",
    },
    **error_responses(400, 404, 409, 422),
}


@router.post(
    "/v1/customers/{customer}/topups",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    status_code=201,
    responses=_GRANTED,
)
def buy_topup(request: Request, customer: str, body: TopupIn) -> Any:
    """Buy `blocks` top-up blocks: effective at once, recorded with their price; idempotent on
    `id`."""
    req = service.GrantRequest(customer, body.id, body.feature, "topup", blocks=body.blocks)
    return _grant(request, req, body.effective_at)


@router.post(
    "/v1/customers/{customer}/grants",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    status_code=201,
    responses=_GRANTED,
)
def grant_credit(request: Request, customer: str, body: GrantIn) -> Any:
    """An operator's credit of extra allowance; `rollover` carries its unused part into the next
    period once."""
    req = service.GrantRequest(
        customer, body.id, body.feature, "credit", amount=body.amount, rollover=body.rollover
    )
    return _grant(request, req, body.effective_at)


@router.get(
    "/v1/customers/{customer}/grants",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": GrantsOut}, **error_responses(404)},
)
def list_grants(request: Request, customer: str) -> Any:
    svc = services(request)
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
        if customer not in catalog.spec.customers:
            raise NotFound(f"customer: unknown customer {customer!r}")
        currency = customers.view(Context(conn, catalog), customer, to_us(svc.now())).plan.currency
        return JSON(
            {"grants": [service.as_dict(r, currency) for r in service.listing(conn, customer)]}
        )


def _grant(request: Request, req: service.GrantRequest, effective_at: str | None) -> JSON:
    svc = services(request)
    now = svc.now()
    when = instant(effective_at, "effective_at", now)
    with unit_of_work(svc.engine) as conn:
        catalog = svc.catalogs.current(conn)
        ctx = Context(conn, catalog)
        grant, created = use_grants.add(ctx, req, when, to_us(now))
        if created:
            use_customers.after_change(ctx, req.customer, when, now)
    return JSON({**grant, "created": created}, status_code=201 if created else 200)
