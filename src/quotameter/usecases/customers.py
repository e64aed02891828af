"""Change a customer: seats, settings or plan, refused inside a finalized period, then the
customer evaluated again where a limit may have moved."""

from __future__ import annotations

from datetime import datetime

from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.invoices.service import refuse_if_finalized
from quotameter.notifications import scheduler
from quotameter.notifications.service import evaluate_all
from quotameter.timeutil import to_us


def change(
    ctx: Context,
    customer: str,
    *,
    seats: int | None,
    settings: dict[str, object],
    effective: datetime,
    now: datetime,
) -> None:
    """Seats (history, from `effective`), contact settings and auto_upgrade (current values)."""
    conn, catalog = ctx.conn, ctx.catalog
    customers.require(catalog, customer)
    if seats is not None:
        refuse_if_finalized(conn, customer, to_us(effective))
    customers.change(
        ctx,
        customer,
        seats=seats,
        settings=settings,
        effective_us=to_us(effective),
        recorded_us=to_us(now),
    )
    after_change(ctx, customer, effective, now)


def change_plan(
    ctx: Context,
    customer: str,
    plan: str,
    effective: datetime,
    now: datetime,
) -> None:
    """Move to another plan from `effective`; the period's usage carries over."""
    conn, catalog = ctx.conn, ctx.catalog
    customers.check_plan(catalog, customer, plan)
    refuse_if_finalized(conn, customer, to_us(effective))
    customers.change_plan(ctx, customer, plan, to_us(effective), to_us(now))
    after_change(ctx, customer, effective, now)


def after_change(ctx: Context, customer: str, when: datetime, now: datetime) -> None:
    """A limit may have moved: record what that means now, and when time will cross next."""
    catalog = ctx.catalog
    evaluate_all(ctx, customer, max(when, now), to_us(now))
    scheduler.refresh_meters(ctx, customer, set(catalog.spec.meters), max(when, now))
