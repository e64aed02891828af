from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from quotameter.api.auth import reads_customer
from quotameter.api.web import JSON, Instant, Number, PeriodOut, error_responses, services
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.delivery import service as deliveries
from quotameter.notice_kinds import NoticeKind
from quotameter.notifications import service
from quotameter.notifications.scheduler import settle_before_read
from quotameter.notifications.service import as_dict
from quotameter.timeutil import to_us

router = APIRouter(tags=["notifications"])


class RecipientsOut(BaseModel):
    email: list[str]
    in_app: bool = Field(description="also shown in the app, to every member")
    members: list[str] | None = Field(default=None, description="with in_app: the members told")


class DeliveryOut(BaseModel):
    channel: str = Field(description="email or webhook")
    status: str = Field(description="pending, sending, delivered or dead (gave up)")
    attempts: int


class NoticeOut(BaseModel):
    id: int
    type: NoticeKind = Field(description="what happened")
    feature: str | None
    percent: Number | None = Field(description="percent used, for thresholds")
    period: PeriodOut | None
    at: Instant = Field(description="the instant it happened")
    recipients: RecipientsOut
    status: str = Field(description="pending, or dispatched once its deliveries were created")
    details: dict[str, Any]
    deliveries: list[DeliveryOut] = Field(
        default=[], description="one per e-mail message or webhook endpoint"
    )


class NoticesOut(BaseModel):
    notifications: list[NoticeOut]


@router.get(
    "/v1/customers/{customer}/notifications",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": NoticesOut}, **error_responses(404, 422)},
)
def list_notices(
    request: Request,
    customer: str,
    after: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(500, ge=1, le=1000),
) -> Any:
    """Notices recorded for a customer, oldest first; `after` an id to page on."""
    svc = services(request)
    settle_before_read(svc.engine, svc.catalogs, customer, svc.now)
    with svc.engine.connect() as conn:
        customers.view(
            Context(conn, svc.catalogs.current(conn)), customer, to_us(svc.now())
        )  # 404 for a stranger
        rows = service.listing(conn, customer, after, limit)
        sent = deliveries.for_notices(conn, [r.id for r in rows])
    out = []
    for row in rows:
        notice = as_dict(row)
        notice["deliveries"] = [
            {"channel": d.channel, "status": d.status, "attempts": d.attempts}
            for d in sent.get(row.id, [])
        ]
        out.append(notice)
    return JSON({"notifications": out})
