from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotameter.api.auth import admin_only, may_read, principal_of, reads_customer, route_path
from quotameter.api.web import (
    JSON,
    ErrorBody,
    Instant,
    Number,
    PeriodOut,
    Quantity,
    Services,
    Text,
    error_responses,
    instant,
    read,
    services,
)
from quotameter.context import Context
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance
from quotameter.errors import QuotameterError
from quotameter.store.engine import retry_transient, unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import balances
from quotameter.usecases.consume import ConsumeRequest, Consumption, consume

router = APIRouter(tags=["entitlements"])


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Quantity = Field(examples=[5])
    at: Instant | None = None


class ConsumeIn(CheckIn):
    id: Text = Field(
        min_length=1,
        max_length=200,
        examples=["request-1"],
        description="names this consumption of the feature: a repeat with the same amount "
        "records nothing; another amount under it is refused (409)",
    )


class ForecastOut(BaseModel):
    """When the allowance (`limit`) runs out at this period's pace so far: pace = usage / time
    since the period's start, and it runs out at `at + (limit − usage) / pace`."""

    method: Literal["period_pace"]
    runs_out_at: Instant | None = Field(
        description="to the second; null without a limit, for a gauge, before any usage, or "
        "when it would be at or after the period's end; `at` once exhausted"
    )
    this_period: bool = Field(description="`runs_out_at` falls before the period's end")
    exhausted: bool = Field(description="usage has reached the limit already")


class BalanceOut(BaseModel):
    """A feature's standing for the period that contains `at`; `null` limits mean unlimited."""

    customer: str
    feature: str
    plan: str
    meter: str
    unit: str
    usage: Number
    included: Number | None
    granted: Number
    limit: Number | None
    hard_limit: Number | None
    remaining: Number | None
    overage: Number
    has_access: bool
    period: PeriodOut
    at: Instant
    forecast: ForecastOut
    level: Number | None = Field(default=None, description="gauges only: the level now")


class BalancesOut(BaseModel):
    """Every feature of the customer's plan at `at`, sorted by feature."""

    customer: str
    plan: str = Field(description="the plan in force at `at`")
    at: Instant
    entitlements: list[BalanceOut]


class CheckOut(BalanceOut):
    allowed: bool
    reason: str


class ConsumeOut(CheckOut):
    duplicate: bool = Field(description="this `id` was recorded before; nothing was added")


class ConsumeRefusedOut(ConsumeOut):
    """A refused consumption: nothing recorded; the balance as it stands."""

    error: str = Field(
        description="`amount: ` and the reason, as every error names its field",
        examples=["amount: 30 more would exceed the limit of 5000 (12 left)"],
    )


@router.get(
    "/v1/customers/{customer}/entitlements",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": BalancesOut}, **error_responses(404, 422)},
)
async def get_balances(request: Request, customer: str, at: Instant | None = None) -> Any:
    """Every balance of the customer's plan at `at` (default: now), sorted by feature."""
    svc = services(request)
    when = instant(at, "at", svc.now())
    plan, found = await _read_balances(svc, customer, when)
    return JSON(
        {
            "customer": customer,
            "plan": plan,
            "at": when,
            "entitlements": [b.as_dict() for b in found],
        }
    )


@router.get(
    "/v1/customers/{customer}/entitlements/{feature}",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": BalanceOut}, **error_responses(404, 422)},
)
async def get_balance(
    request: Request, customer: str, feature: str, at: Instant | None = None
) -> Any:
    """The feature's balance for the period that contains `at` (default: now)."""
    b = await _read_balance(services(request), customer, feature, at)
    return JSON(b.as_dict())


@router.post(
    "/v1/customers/{customer}/entitlements/{feature}/check",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses={200: {"model": CheckOut}, **error_responses(400, 404, 422)},
)
async def check(request: Request, customer: str, feature: str, body: CheckIn) -> Any:
    """May `amount` more be used now? Reads only; `consume` to record."""
    b = await _read_balance(services(request), customer, feature, body.at)
    return _check_answer(b, body.amount)


def _check_answer(b: Balance, amount: Decimal) -> JSON:
    allowed, reason = model.allows(b.standing, amount)
    return JSON({"allowed": allowed, "reason": reason, **b.as_dict()})


async def _read_balance(svc: Services, customer: str, feature: str, at: str | None) -> Balance:
    """A cache hit costs one query and is answered on the event loop (on PostgreSQL too: a
    threadpool hop costs more than the round trip); anything else is computed by `read`."""
    when = instant(at, "at", svc.now())
    hit = await _cached_balance(svc, customer, feature, when)
    if hit is not None:
        return hit
    await _settle(svc, customer)
    return await read(svc, _compute_balance, svc, customer, feature, when)


async def _cached_balance(
    svc: Services, customer: str, feature: str, when: datetime
) -> Balance | None:
    if svc.balances is None:
        return None
    found = await svc.reads.one_row(balances.FRESHNESS, {"c": customer})
    return balances.cached(found, svc.balances, customer, feature, when)


_CHECK = re.compile(
    r"/v1/customers/(?P<customer>[^/\x00]+)/entitlements/(?P<feature>[^/\x00]+)/check"
)


class CheckFromCache:
    """Answer a check whose balance is cached without FastAPI's routing and dependencies.

    A check is the call a live product makes before every unmute, so it is the one request
    whose own cost is smaller than the framework's: with a cached balance it is one query.
    This middleware (inside `KeyFirst`, which has checked the key, and `RequestGuard`, which
    bounds the body) answers such a request itself. Everything else goes on to the route,
    with the body already read handed to it again: a key that may not read the customer, a
    body the route would refuse, a balance not cached. The route is the one definition of
    the endpoint (its schema, its errors); the answers of the two are the same.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            _CHECK.fullmatch(route_path(scope))
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        who = principal_of(scope) if found else None
        if found is None or who is None or not may_read(who, found["customer"]):
            await self.app(scope, receive, send)
            return
        read_so_far: list[Message] = []
        try:
            while not read_so_far or read_so_far[-1].get("more_body", False):
                read_so_far.append(await receive())
                if read_so_far[-1]["type"] != "http.request":
                    break
        except HTTPException as err:  # the guard's: the route answers it, as for any body
            await self.app(scope, _replay(read_so_far, receive, err), send)
            return
        answer = await _answer_from_cache(
            services(HTTPConnection(scope)), found["customer"], found["feature"], read_so_far
        )
        if answer is None:
            await self.app(scope, _replay(read_so_far, receive), send)
            return
        await answer(scope, receive, send)


async def _answer_from_cache(
    svc: Services, customer: str, feature: str, messages: list[Message]
) -> JSON | None:
    """The route's answer if the body is valid and the balance cached; else None. (A read the
    database is too busy for is answered 503 here, as the route would after the same wait.)"""
    if not messages or messages[-1]["type"] != "http.request":
        return None
    try:
        body = CheckIn.model_validate_json(b"".join(m.get("body", b"") for m in messages))
        when = instant(body.at, "at", svc.now())
    except (ValidationError, QuotameterError):
        return None
    b = await _cached_balance(svc, customer, feature, when)
    return None if b is None else _check_answer(b, body.amount)


def _replay(messages: list[Message], receive: Receive, error: Exception | None = None) -> Receive:
    """`receive` as if nothing had been read: the messages read, then the error met (if any),
    then the rest from the client."""
    pending = list(messages)

    async def again() -> Message:
        nonlocal error
        if pending:
            return pending.pop(0)
        if error is not None:
            raised, error = error, None
            raise raised
        return await receive()

    return again


async def _settle(svc: Services, customer: str) -> None:
    """Usage may have changed since the last evaluation: settle it first (an auto-upgrade may
    be owed). That is a write, so it runs in the threadpool: the event loop, which answers
    SQLite's reads, never waits for the write lock. One lookup when nothing is pending."""
    if await read(svc, _pending, svc, customer):
        await run_in_threadpool(balances.settle, svc.engine, svc.catalogs, customer, svc.now)


def _pending(svc: Services, customer: str) -> bool:
    with svc.engine.connect() as conn:
        return balances.pending(conn, customer)


async def _read_balances(svc: Services, customer: str, when: datetime) -> tuple[str, list[Balance]]:
    """Each balance the way `_read_balance` reads one: settled first when an evaluation is
    owed, then through the cache (its freshness read per feature: one query on a hit)."""
    await _settle(svc, customer)
    return await read(svc, _compute_balances, svc, customer, when)


def _compute_balances(svc: Services, customer: str, when: datetime) -> tuple[str, list[Balance]]:
    with svc.engine.connect() as conn:
        return balances.compute_all(conn, svc.catalogs, svc.balances, customer, when)


def _compute_balance(svc: Services, customer: str, feature: str, when: datetime) -> Balance:
    with svc.engine.connect() as conn:
        return balances.compute(conn, svc.catalogs, svc.balances, customer, feature, when)


@router.post(
    "/v1/customers/{customer}/entitlements/{feature}/consume",
    response_class=JSON,
    dependencies=[Depends(admin_only)],
    responses={
        200: {"model": ConsumeOut},
        **error_responses(400, 404, 422),
        409: {
            "model": ConsumeRefusedOut | ErrorBody,
            "description": "Not allowed: nothing recorded, and the balance as it stands "
            '(`allowed: false`). Or `{"error"}` naming `id` (recorded before '
            "with another amount) or `at` (in an invoiced period).",
        },
    },
)
async def post_consume(request: Request, customer: str, feature: str, body: ConsumeIn) -> Any:
    """Check and record in one atomic step; refused (409) when not allowed; idempotent on
    `id` (per customer and feature): a repeat with the same amount records nothing and
    answers `duplicate: true`, another amount under a recorded `id` is a 409."""
    svc = services(request)
    result = await run_in_threadpool(_consume, svc, customer, feature, body)
    payload = {
        "allowed": result.allowed,
        "reason": result.reason,
        "duplicate": result.duplicate,
        **result.balance.as_dict(),
    }
    if not result.allowed:
        return JSON({"error": f"amount: {result.reason}", **payload}, status_code=409)
    return JSON(payload)


@retry_transient
def _consume(svc: Services, customer: str, feature: str, body: ConsumeIn) -> Consumption:
    with unit_of_work(svc.engine) as conn:
        now = (
            svc.now()
        )  # read inside the transaction: no later-stamped consumption is committed yet
        req = ConsumeRequest(customer, feature, body.id, body.amount, instant(body.at, "at", now))
        return consume(Context(conn, svc.catalogs.current(conn)), req, to_us(now), svc.now)
