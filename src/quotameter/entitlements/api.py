from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from quotameter.entitlements.service import balance
from quotameter.web import JSON, instant, services

router = APIRouter(tags=["entitlements"])


@router.get("/v1/customers/{customer}/entitlements/{feature}", response_class=JSON)
def get_balance(request: Request, customer: str, feature: str, at: str | None = None) -> Any:
    """The feature's balance for the period that contains `at` (default: now)."""
    svc = services(request)
    when = instant(at, "at", svc.now())
    with svc.engine.connect() as conn:
        b = balance(conn, svc.catalogs.current(conn), customer, feature, when)
    out = {
        "customer": b.customer, "feature": b.feature, "meter": b.meter, "unit": b.unit,
        "usage": b.usage, "period": {"start": b.period.start, "end": b.period.end}, "at": b.at,
    }
    if b.level is not None:
        out["level"] = b.level
    return JSON(out)
