from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from quotameter.customers import service as customers
from quotameter.keys.auth import reads_customer
from quotameter.notifications import repository
from quotameter.notifications.scheduler import settle_before_read
from quotameter.notifications.service import as_dict
from quotameter.timeutil import to_us
from quotameter.web import JSON, Instant, Number, PeriodOut, error_responses, services


router = APIRouter(tags=["notifications"])


class RecipientsOut(BaseModel):
    email: list[str]
    in_app: bool = Field(description="also shown in the app, to every member")
    members: list[str] | None = Field(default=None, description="with in_app: the members told")


class NoticeOut(BaseModel):
    id: int
    type: str
    feature: str | None
    percent: Number | None = Field(description="percent used, for thresholds")
    period: PeriodOut | None
    at: Instant = Field(description="the instant it happened")
    recipients: RecipientsOut
    status: str
    details: dict[str, Any]


class NoticesOut(BaseModel):
    notifications: list[NoticeOut]


@router.get("/v1/customers/{customer}/notifications", response_class=JSON, dependencies=[Depends(reads_customer)],
            responses={200: {"model": NoticesOut}, **error_responses(404, 422)})
def list_notices(request: Request, customer: str, after: int = Query(0, ge=0, le=2**63 - 1),
                 limit: int = Query(500, ge=1, le=1000)) -> Any:
    """Notices recorded for a customer, oldest first; `after` an id to page on."""
    svc = services(request)
    settle_before_read(svc.engine, svc.catalogs, customer, svc.now)
    with svc.engine.connect() as conn:
        customers.view(conn, svc.catalogs.current(conn), customer, to_us(svc.now()))  # 404 for a stranger
        rows = repository.listing(conn, customer, after, limit)
    return JSON({"notifications": [as_dict(r) for r in rows]})
