from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from quotameter.api.auth import admin_only, reads_customer
from quotameter.api.web import JSON, Instant, error_responses, instant, services
from quotameter.context import Context
from quotameter.customers import service
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us
from quotameter.usecases import customers as use_customers

router = APIRouter(tags=["customers"])

MAX_SEATS = (
    1_000_000_000  # far above any organization, and within the 32-bit column that keeps seats
)


class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seats: int | None = Field(default=None, ge=0, le=MAX_SEATS, examples=[12])
    admins: list[str] | None = None
    owner: str | None = None
    members: list[str] | None = None
    auto_upgrade: bool | None = None
    effective_at: Instant | None = None


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, examples=["pro"])
    effective_at: Instant | None = None


class PlanChangeOut(BaseModel):
    plan: str
    effective_at: Instant
    reason: str


class CustomerOut(BaseModel):
    key: str
    plan: str = Field(description="the plan in force at `at`")
    seats: int = Field(description="paid seats at `at`")
    admins: list[str]
    owner: str | None
    members: list[str]
    timezone: str
    billing_anchor: date | None
    auto_upgrade: bool
    at: Instant
    plan_changes: list[PlanChangeOut]


_CUSTOMER: dict[int | str, dict[str, Any]] = {200: {"model": CustomerOut}}


@router.get(
    "/v1/customers/{customer}",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={**_CUSTOMER, **error_responses(404, 422)},
)
def get_customer(request: Request, customer: str, at: Instant | None = None) -> Any:
    svc = services(request)
    when = instant(at, "at", svc.now())
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
        ctx = Context(conn, catalog)
        view = service.view(ctx, customer, to_us(when))
        seats = service.seats_at(ctx, customer, to_us(when))
        history = service.plan_history(conn, customer)
    return JSON(
        {
            "key": customer,
            "plan": view.plan_name,
            "seats": seats,
            "admins": view.spec.admins,
            "owner": view.spec.owner,
            "members": view.spec.members,
            "timezone": view.spec.timezone,
            "billing_anchor": view.spec.billing_anchor,
            "auto_upgrade": view.spec.auto_upgrade,
            "at": when,
            "plan_changes": [
                {"plan": h.plan, "effective_at": from_us(h.effective_us), "reason": h.reason}
                for h in history
            ],
        }
    )


@router.patch(
    "/v1/customers/{customer}",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={**_CUSTOMER, **error_responses(400, 404, 409, 422)},
)
def patch_customer(request: Request, customer: str, body: CustomerPatch) -> Any:
    """Seats (kept as history, effective at `effective_at`), contacts, auto_upgrade."""
    svc = services(request)
    now = svc.now()
    when = instant(body.effective_at, "effective_at", now)
    settings = body.model_dump(exclude_unset=True, exclude={"seats", "effective_at"})
    with unit_of_work(svc.engine) as conn:
        catalog = svc.catalogs.current(conn)
        use_customers.change(
            Context(conn, catalog),
            customer,
            seats=body.seats,
            settings=settings,
            effective=when,
            now=now,
        )
    return get_customer(request, customer)


@router.post(
    "/v1/customers/{customer}/subscription",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={**_CUSTOMER, **error_responses(400, 404, 409, 422)},
)
def change_subscription(request: Request, customer: str, body: SubscriptionIn) -> Any:
    """Move to another plan at once (or at `effective_at`); the period's usage carries over."""
    svc = services(request)
    now = svc.now()
    when = instant(body.effective_at, "effective_at", now)
    with unit_of_work(svc.engine) as conn:
        catalog = svc.catalogs.current(conn)
        use_customers.change_plan(Context(conn, catalog), customer, body.plan, when, now)
    return get_customer(request, customer)
