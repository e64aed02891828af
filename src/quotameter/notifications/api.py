from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from quotameter.customers import service as customers
from quotameter.keys.auth import reads_customer
from quotameter.notifications import repository
from quotameter.notifications.scheduler import settle_before_read
from quotameter.notifications.service import as_dict
from quotameter.timeutil import to_us
from quotameter.web import JSON, services


router = APIRouter(tags=["notifications"])


@router.get("/v1/customers/{customer}/notifications", response_class=JSON, dependencies=[Depends(reads_customer)])
def list_notices(request: Request, customer: str, after: int = Query(0, ge=0),
                 limit: int = Query(500, ge=1, le=1000)) -> Any:
    """Notices recorded for a customer, oldest first; `after` an id to page on."""
    svc = services(request)
    settle_before_read(svc.engine, svc.catalogs, customer, svc.now())
    with svc.engine.connect() as conn:
        customers.view(conn, svc.catalogs.current(conn), customer, to_us(svc.now()))  # 404 for a stranger
        rows = repository.listing(conn, customer, after, limit)
    return JSON({"notifications": [as_dict(r) for r in rows]})
