from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from quotameter.api.auth import admin_only, reads_customer
from quotameter.api.web import (
    JSON,
    Instant,
    Number,
    Text,
    error_responses,
    instant,
    services,
)
from quotameter.context import Context
from quotameter.customers import service
from quotameter.store.engine import lock_keys, unit_of_work
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


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(
        min_length=1,
        examples=["northwind"],
        description="the customer's key: letters, digits and _ . : -, at most 128 characters",
    )
    plan: str = Field(min_length=1, examples=["basic"])
    seats: int = Field(default=0, ge=0, le=MAX_SEATS, examples=[12])
    timezone: Text = Field(default="UTC", examples=["Europe/Paris"])
    billing_anchor: date | None = Field(
        default=None, description="the day billing cycles start from (billing_cycle periods)"
    )
    admins: list[Text] = []
    owner: Text | None = None
    members: list[Text] = []
    auto_upgrade: bool = False
    effective_at: Instant | None = Field(
        default=None,
        description="when the customer signed up, kept as `created_at` (default: now); the "
        "customer, its plan and seats are in force from the moment it is created",
    )


class CreatedOut(CustomerOut):
    created_at: Instant = Field(description="`effective_at` of the sign-up")


class CustomerRowOut(BaseModel):
    key: str
    plan: str = Field(description="the plan in force now")
    state: Literal["blocked", "overage", "near_limit", "ok", "unlimited"] = Field(
        description="blocked > overage > near_limit > ok over the features of its plan; "
        "unlimited: no feature of its plan has an allowance"
    )
    feature: str | None = Field(description="the most-used feature (highest percent)")
    percent: Number | None = Field(description="percent of that feature's limit used")
    usage: Number | None
    limit: Number | None
    unit: str | None
    since: Instant | None = Field(description="blocked, or in overage, since")
    evaluated_at: Instant | None = Field(description="when these numbers were evaluated")


class CustomersOut(BaseModel):
    customers: list[CustomerRowOut]
    next_cursor: str | None = Field(description="the `cursor` of the next page; null on the last")


@router.get(
    "/v1/customers",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={200: {"model": CustomersOut}, **error_responses(422)},
)
def list_customers(
    request: Request,
    state: Literal["blocked", "near_limit", "overage", "unlimited"] | None = Query(
        None,
        description="only customers with this condition on some feature (a blocked customer "
        "past its first notice level also matches near_limit)",
    ),
    q: Text | None = Query(
        None, max_length=200, description="a part of the key, in any case (acme finds ACME-eu)"
    ),
    sort: Literal["name", "percent"] = Query(
        "name", description="by name, or by percent used (highest first, ties by name)"
    ),
    limit: int = Query(
        use_customers.DEFAULT_LIMIT,
        ge=1,
        le=use_customers.MAX_LIMIT,
        description="at most this many customers",
    ),
    cursor: str | None = Query(
        None,
        max_length=400,  # the place of the last customer: its key (128) and its percent
        description="the `next_cursor` of the previous page: the customers after it",
    ),
) -> Any:
    """Every customer with its state and its most-used feature, as the last evaluation of each
    found them, a page at a time (admin keys)."""
    svc = services(request)
    with svc.engine.connect() as conn:
        page = use_customers.overview(
            Context(conn, svc.catalogs.current(conn)),
            svc.now(),
            state=state,
            q=q,
            sort=sort,
            limit=limit,
            cursor=cursor,
        )
    return JSON(
        {"customers": [row.as_dict() for row in page.rows], "next_cursor": page.next_cursor}
    )


@router.post(
    "/v1/customers",
    response_class=JSON,
    status_code=201,
    dependencies=[Depends(admin_only)],
    responses={201: {"model": CreatedOut}, **error_responses(400, 409, 422)},
)
def create_customer(request: Request, body: CustomerIn) -> Any:
    """Sign a customer up: it is added to the catalog in force (a new version) and kept by
    every later catalog apply that does not declare it. 409 when the name is taken."""
    svc = services(request)
    now = svc.now()
    when = instant(body.effective_at, "effective_at", now)
    fields = body.model_dump(exclude={"name", "effective_at"})
    with unit_of_work(svc.engine) as conn:
        # Sign-ups and catalog applies take turns: each stores the version after the last.
        lock_keys(conn, ["catalog"])
        use_customers.sign_up(conn, svc.catalogs.current(conn), body.name, fields, when, now)
    return JSON({**_customer(request, body.name, now), "created_at": when}, status_code=201)


@router.get(
    "/v1/customers/{customer}",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={**_CUSTOMER, **error_responses(404, 422)},
)
def get_customer(request: Request, customer: str, at: Instant | None = None) -> Any:
    svc = services(request)
    return JSON(_customer(request, customer, instant(at, "at", svc.now())))


def _customer(request: Request, customer: str, when: datetime) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
        ctx = Context(conn, catalog)
        view = service.view(ctx, customer, to_us(when))
        seats = service.seats_at(ctx, customer, to_us(when))
        history = service.plan_history(conn, customer)
    return {
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
