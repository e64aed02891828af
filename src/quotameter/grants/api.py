from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from quotameter.customers.api import after_change
from quotameter.grants import repository, service
from quotameter.keys.auth import admin_only, reads_customer
from quotameter.notifications import repository as notices
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.web import JSON, instant, services


router = APIRouter(tags=["grants"])


class TopupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str
    blocks: int = Field(ge=1)
    id: str = Field(min_length=1, max_length=200)
    effective_at: str | None = None


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str
    amount: Decimal = Field(gt=0)
    id: str = Field(min_length=1, max_length=200)
    rollover: bool = False
    effective_at: str | None = None


@router.post("/v1/customers/{customer}/topups", response_class=JSON, dependencies=[Depends(admin_only)])
def buy_topup(request: Request, customer: str, body: TopupIn) -> Any:
    """Buy `blocks` top-up blocks: effective at once, recorded with their price; idempotent on `id`."""
    req = service.GrantRequest(customer, body.id, body.feature, "topup", blocks=body.blocks)
    return _grant(request, req, body.effective_at)


@router.post("/v1/customers/{customer}/grants", response_class=JSON, dependencies=[Depends(admin_only)])
def grant_credit(request: Request, customer: str, body: GrantIn) -> Any:
    """An operator's credit of extra allowance; `rollover` carries its unused part into the next period once."""
    req = service.GrantRequest(customer, body.id, body.feature, "credit", amount=body.amount, rollover=body.rollover)
    return _grant(request, req, body.effective_at)


@router.get("/v1/customers/{customer}/grants", response_class=JSON, dependencies=[Depends(reads_customer)])
def list_grants(request: Request, customer: str) -> Any:
    svc = services(request)
    with svc.engine.connect() as conn:
        return JSON({"grants": [service.as_dict(r) for r in repository.listing(conn, customer)]})


def _grant(request: Request, req: service.GrantRequest, effective_at: str | None) -> JSON:
    svc = services(request)
    now = svc.now()
    when = instant(effective_at, "effective_at", now)
    with unit_of_work(svc.engine) as conn:
        catalog = svc.catalogs.current(conn)
        grant, created = service.add(conn, catalog, req, when, to_us(now))
        if created:
            if req.kind == "topup":
                from quotameter.customers import service as customers
                from quotameter.notifications.service import recipients

                view = customers.view(conn, catalog, req.customer, to_us(when))
                ent = view.plan.entitlements[req.feature]
                notices.record(conn, customer=req.customer, feature=req.feature, type="topup.applied", percent=None,
                               period=None, at_us=to_us(when), recipients=recipients(view, ent, "topup.applied"),
                               payload={"blocks": req.blocks, "amount": str(grant["amount"]), "price": grant["price"]},
                               recorded_us=to_us(now))
            after_change(conn, catalog, req.customer, when, now)
    return JSON({**grant, "created": created}, status_code=201 if created else 200)
