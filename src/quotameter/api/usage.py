from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from quotameter.api.auth import reads_customer
from quotameter.api.web import JSON, Services, error_responses, instant, services
from quotameter.context import Context
from quotameter.errors import Invalid
from quotameter.notifications.scheduler import settle_before_read
from quotameter.timeutil import EPOCH
from quotameter.usage.model import Window, is_window
from quotameter.usage.service import Report, UsageQuery, report

router = APIRouter(tags=["usage"])


@router.get(
    "/v1/customers/{customer}/usage",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses=error_responses(404, 422),
)
async def get_usage(
    request: Request,
    customer: str,
    feature: str | None = Query(None, description="a feature of the customer's current plan"),
    group_by: str | None = Query(
        None, description="a data property, e.g. `user` (a duration meter: its merge property)"
    ),
    window: str | None = Query(
        None,
        description="`hour`, `day` or `month` in the customer's time zone; "
        "omitted: one row per group for the whole range",
    ),
    start: str | None = Query(
        None, alias="from", description="RFC 3339; default: the start of the feature's period"
    ),
    end: str | None = Query(
        None, alias="to", description="RFC 3339, exclusive; default and at most: now"
    ),
) -> Any:
    """Usage of one feature per group and window: who used how much, and when.

    `total` is the usage over `[from, to)` with the balance's arithmetic (for the default range,
    the balance's `usage`). Count and sum rows add up to it; duration rows too without
    `window`, while with windows each merged span is cut at the window edges and every piece
    rounded on its own, so with ceil rounding the days can add up to more than the month.
    """
    svc = services(request)
    query = UsageQuery(
        feature or None,
        group_by or None,
        _window(window),
        _instant(start, "from"),
        _instant(end, "to"),
    )
    # A report may read a month of raw events: off the event loop, also on SQLite.
    result = await run_in_threadpool(_report, svc, customer, query)
    return JSON(result.as_dict())


def _report(svc: Services, customer: str, query: UsageQuery) -> Report:
    now = svc.now()
    settle_before_read(
        svc.engine, svc.catalogs, customer, svc.now
    )  # an auto-upgrade owed changes the plan
    with svc.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every page: spans replaced by a concurrent late event are
            # neither counted twice nor missed. (SQLite's transactions are serializable.)
            conn.execution_options(isolation_level="REPEATABLE READ")
        return report(Context(conn, svc.catalogs.current(conn)), customer, query, now)


def _window(value: str | None) -> Window | None:
    if not value:
        return None
    if not is_window(value):
        raise Invalid(f"window: must be day, hour or month (got {value!r})")
    return value


def _instant(value: str | None, field: str) -> datetime | None:
    return instant(value, field, EPOCH) if value else None
