from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quotameter.entitlements import model
from quotameter.entitlements.service import balance, consume
from quotameter.notifications.scheduler import settle_before_read
from quotameter.store.engine import retry_transient, unit_of_work
from quotameter.timeutil import to_us
from quotameter.web import JSON, Services, instant, read, services

router = APIRouter(tags=["entitlements"])


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(gt=0)
    at: str | None = None


class ConsumeIn(CheckIn):
    id: str = Field(min_length=1, max_length=200)


@router.get("/v1/customers/{customer}/entitlements/{feature}", response_class=JSON)
async def get_balance(request: Request, customer: str, feature: str, at: str | None = None) -> Any:
    """The feature's balance for the period that contains `at` (default: now)."""
    svc = services(request)
    b = await read(svc, _balance, svc, customer, feature, at)
    return JSON(b.as_dict())


@router.post("/v1/customers/{customer}/entitlements/{feature}/check", response_class=JSON)
async def check(request: Request, customer: str, feature: str, body: CheckIn) -> Any:
    """May `amount` more be used now? Reads only; `consume` to record."""
    svc = services(request)
    b = await read(svc, _balance, svc, customer, feature, body.at)
    allowed, reason = model.allows(b.standing, body.amount)
    return JSON({"allowed": allowed, "reason": reason, **b.as_dict()})


def _balance(svc: Services, customer: str, feature: str, at: str | None):  # type: ignore[no-untyped-def]
    when = instant(at, "at", svc.now())
    settle_before_read(svc.engine, svc.catalogs, customer, svc.now())
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
        if svc.balances is None:
            return balance(conn, catalog, customer, feature, when)
        return svc.balances.balance(conn, catalog, customer, feature, when)


@router.post("/v1/customers/{customer}/entitlements/{feature}/consume", response_class=JSON)
async def post_consume(request: Request, customer: str, feature: str, body: ConsumeIn) -> Any:
    """Check and record in one atomic step; refused (409) when not allowed; idempotent on `id`."""
    svc = services(request)
    result = await run_in_threadpool(_consume, svc, customer, feature, body)
    payload = {"allowed": result.allowed, "reason": result.reason, "duplicate": result.duplicate,
               **result.balance.as_dict()}
    return JSON(payload, status_code=200 if result.allowed else 409)


@retry_transient
def _consume(svc: Services, customer: str, feature: str, body: ConsumeIn):  # type: ignore[no-untyped-def]
    with unit_of_work(svc.engine) as conn:
        now = svc.now()  # read inside the transaction: no later-stamped consumption is committed yet
        when = instant(body.at, "at", now)
        return consume(conn, svc.catalogs.current(conn), customer, feature, body.id, body.amount, when, to_us(now))
