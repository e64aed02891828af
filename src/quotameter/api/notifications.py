from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from quotameter.api.auth import reads_customer
from quotameter.api.web import (
    JSON,
    Instant,
    Number,
    PeriodOut,
    cursor_query,
    cursor_text,
    cursor_value,
    error_responses,
    limit_query,
    services,
)
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.delivery import service as deliveries
from quotameter.errors import Invalid
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
    next_cursor: str | None = Field(description="the `cursor` of the next page; null on the last")


_NOTICES = "notifications"  # the kind of the notices' cursors: the id of the last


@router.get(
    "/v1/customers/{customer}/notifications",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": NoticesOut}, **error_responses(404, 422)},
)
def list_notices(
    request: Request,
    customer: str,
    after: int | None = Query(
        None, ge=0, le=2**63 - 1, description="a notice id: the notices after it"
    ),
    limit: int = limit_query(500, "at most this many notices"),
    cursor: str | None = cursor_query("the notices"),
) -> Any:
    """Notices recorded for a customer, oldest first, a page at a time: `next_cursor` goes on
    (or `after`, the id of the last notice seen)."""
    if cursor is not None and after is not None:
        raise Invalid("cursor: give either cursor or after, not both")
    first = cursor_value(_NOTICES, cursor) if cursor is not None else (after or 0)
    svc = services(request)
    settle_before_read(svc.engine, svc.catalogs, customer, svc.now)
    with svc.engine.connect() as conn:
        customers.view(
            Context(conn, svc.catalogs.current(conn)), customer, to_us(svc.now())
        )  # 404 for a stranger
        rows = service.listing(conn, customer, first, limit + 1)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = cursor_text(_NOTICES, rows[-1].id)
        sent = deliveries.for_notices(conn, [r.id for r in rows])
    out = []
    for row in rows:
        notice = as_dict(row)
        notice["deliveries"] = [
            {"channel": d.channel, "status": d.status, "attempts": d.attempts}
            for d in sent.get(row.id, [])
        ]
        out.append(notice)
    return JSON({"notifications": out, "next_cursor": next_cursor})
