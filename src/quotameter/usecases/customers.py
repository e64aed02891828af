"""Customers: change one (seats, settings or plan, refused inside a finalized period, then the
customer evaluated again where a limit may have moved), sign one up, and the operators' list
of every customer with its state."""

from __future__ import annotations

import base64
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import Catalog, PlanSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.decimals import canonical
from quotameter.errors import Invalid, shown
from quotameter.invoices.service import refuse_if_finalized
from quotameter.notifications import scheduler
from quotameter.notifications.service import evaluate_all, mark_pending, standings_in_force
from quotameter.timeutil import from_us, to_us


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


# --- signing up ------------------------------------------------------------------------------


def sign_up(
    conn: Connection,
    current: LoadedCatalog,
    name: str,
    fields: Mapping[str, object],
    effective: datetime,
    now: datetime,
) -> LoadedCatalog:
    """Create customer `name` (`fields`: plan, seats, timezone, billing_anchor, admins, owner,
    members, auto_upgrade): a new catalog version, the catalog in force plus the customer,
    and the name listed as signed up (kept by every later catalog apply), created at
    `effective`; then the customer is marked for evaluation. The caller holds the catalog lock
    (`lock_keys(conn, ["catalog"])`) and read `current` after taking it. Invalid naming the
    field; Conflict when the name is declared or signed up already."""
    spec = catalogs.check_customer(current.spec, name, fields)
    loaded = catalogs.sign_up(conn, current.spec, name, spec, to_us(effective), to_us(now))
    mark_pending(conn, [name], to_us(now))
    return loaded


# --- the operators' list -----------------------------------------------------------------------

STATES = ("blocked", "overage", "near_limit", "ok", "unlimited")
FILTERS = ("blocked", "near_limit", "overage", "unlimited")
SORTS = ("name", "percent")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
_CURSOR = "customers"


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One customer as the list shows it: its state, and its most-used feature."""

    key: str
    plan: str
    state: str  # blocked > overage > near_limit > ok; unlimited: no feature with an allowance
    feature: str | None  # the most-used feature (highest percent of its limit)
    percent: Decimal | None
    usage: Decimal | None
    limit: Decimal | None
    unit: str | None
    since: datetime | None  # blocked (or in overage) since
    evaluated_at: datetime | None  # when the most-used feature's numbers were true
    near: bool  # some feature passed its first notice level
    overage: bool  # some feature is in overage

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "plan": self.plan,
            "state": self.state,
            "feature": self.feature,
            "percent": self.percent,
            "usage": self.usage,
            "limit": self.limit,
            "unit": self.unit,
            "since": self.since,
            "evaluated_at": self.evaluated_at,
        }


@dataclass(frozen=True)
class Overview:
    rows: list[CustomerRow]
    next_cursor: str | None  # the page after this one; None on the last
    previous_cursor: str | None  # the page before (None with `has_previous`: the first page)
    has_previous: bool
    total: int  # customers matching the filters, on every page


def overview(
    ctx: Context,
    now: datetime,
    state: str | None = None,
    q: str | None = None,
    sort: str = "name",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Overview:
    """A page of the customers, each with its state and its most-used feature, as their last
    evaluations found them. The customers and their plans come from the catalog in memory and
    the plan changes on record (one query), the standings from one query (by name without a
    state filter, those of the page's customers only; otherwise every customer's): a page
    costs the same few statements whatever the number of customers.

    A standing counts when its feature is in the customer's plan in force at `now`, with an
    allowance, and its period has not ended at `now`. `state` keeps the customers with that
    condition on some feature (a blocked customer also matches near_limit when it passed its
    first notice level, and overage when some feature is in overage); `q` a case-insensitive
    part of the key; `sort` by name, or by percent (highest first, ties by name, customers
    without one last)."""
    _check(state, sort, limit)
    after = None if cursor is None else _decode(cursor, sort)
    now_us = to_us(now)
    catalog = ctx.catalog.spec
    needle = q.casefold() if q else None
    plans = customers.plans_at(ctx, now_us)
    limited = {name: _limited(plan) for name, plan in catalog.plans.items()}
    keys = [key for key in catalog.customers if needle is None or needle in key.casefold()]
    if state is None and sort == "name":
        # The page is known from the names alone: only its customers' standings are read.
        order = sorted(_place(key) for key in keys)
        first, end = _window(order, after, limit)
        names = [place[-1] for place in order[first:end]]
        held = _by_customer(standings_in_force(ctx.conn, now_us, names))
        chosen = [(k, plans[k], _summary(held.get(k, ()), limited[plans[k]])) for k in names]
    else:
        held = _by_customer(standings_in_force(ctx.conn, now_us))
        found = []
        for key in keys:
            plan = plans[key]
            summary = _summary(held.get(key, ()), limited[plan])
            if _matches(summary, state):
                found.append((_sort_key(key, summary, sort), key, plan, summary))
        found.sort()
        order = [item[0] for item in found]
        first, end = _window(order, after, limit)
        chosen = [(key, plan, summary) for _, key, plan, summary in found[first:end]]
    before = max(0, first - limit)
    return Overview(
        rows=[_row(catalog, key, plan, limited[plan], s) for key, plan, s in chosen],
        next_cursor=_encode(order[end - 1], sort) if end < len(order) and chosen else None,
        previous_cursor=_encode(order[before - 1], sort) if before > 0 else None,
        has_previous=first > 0,
        total=len(order),
    )


def _window(order: list[SortKey], after: SortKey | None, limit: int) -> tuple[int, int]:
    """Where the page starts and ends in `order`: after the cursor's place, `limit` long."""
    first = 0 if after is None else bisect_right(order, after)
    return first, min(len(order), first + limit)


def _by_customer(standings: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    held: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for standing in standings:
        held[standing[_CUSTOMER]].append(standing)
    return held


# The columns of a standing as `standings_in_force` reads them.
_CUSTOMER, _FEATURE, _PERCENT, _NEAR, _BLOCKED, _OVERAGE, _SINCE, _EVALUATED, _USAGE, _LIMIT = (
    range(10)
)


def _limited(plan: PlanSpec) -> dict[str, str]:
    """The plan's features with an allowance, each with its meter."""
    return {f: e.meter for f, e in plan.entitlements.items() if e.allowance is not None}


@dataclass(frozen=True, slots=True)
class _Summary:
    state: str
    near: bool
    overage: bool
    top: tuple[Any, ...] | None  # the most-used feature's standing
    since_us: int | None


_UNLIMITED = _Summary("unlimited", False, False, None, None)
_UNSEEN = _Summary("ok", False, False, None, None)


def _summary(held: Sequence[tuple[Any, ...]], limited: dict[str, str]) -> _Summary:
    """A customer's state from the standings that count: of a feature of its plan in force
    with an allowance (`limited`). One pass: this runs for every customer of a filtered or
    percent-sorted list."""
    if not limited:
        return _UNLIMITED
    top: tuple[Any, ...] | None = None
    near = blocked = over = overage = False
    blocked_since: int | None = None
    over_since: int | None = None
    for s in held:
        if s[_FEATURE] not in limited:
            continue
        if top is None or _most_used(s) < _most_used(top):
            top = s
        near = near or bool(s[_NEAR])
        if s[_BLOCKED]:
            blocked = True
            blocked_since = _earliest(blocked_since, s[_SINCE])
        if s[_OVERAGE]:
            overage = True
            if not s[_BLOCKED]:
                over = True
                over_since = _earliest(over_since, s[_SINCE])
    if top is None:
        return _UNSEEN
    if blocked:
        return _Summary("blocked", near, overage, top, blocked_since)
    if over:
        return _Summary("overage", near, overage, top, over_since)
    return _Summary("near_limit" if near else "ok", near, overage, top, None)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _matches(summary: _Summary, state: str | None) -> bool:
    if state is None:
        return True
    if state == "near_limit":
        return summary.near
    if state == "overage":
        return summary.overage
    return summary.state == state


def _row(
    catalog: Catalog, key: str, plan: str, limited: dict[str, str], summary: _Summary
) -> CustomerRow:
    top = summary.top
    return CustomerRow(
        key=key,
        plan=plan,
        state=summary.state,
        feature=None if top is None else top[_FEATURE],
        percent=_tidy(None if top is None else top[_PERCENT]),
        usage=_tidy(None if top is None else top[_USAGE]),
        limit=_tidy(None if top is None else top[_LIMIT]),
        unit=None if top is None else catalog.meters[limited[top[_FEATURE]]].unit,
        since=None if summary.since_us is None else from_us(summary.since_us),
        evaluated_at=None if top is None else from_us(top[_EVALUATED]),
        near=summary.near,
        overage=summary.overage,
    )


def _tidy(value: Decimal | None) -> Decimal | None:
    return None if value is None else canonical(value)


def _most_used(s: tuple[Any, ...]) -> tuple[bool, Decimal, str]:
    percent = s[_PERCENT]
    return (percent is None, -(percent or _ZERO), s[_FEATURE])


def _check(state: str | None, sort: str, limit: int) -> None:
    if state is not None and state not in FILTERS:
        raise Invalid(f"state: must be one of {', '.join(FILTERS)} (got {shown(state)})")
    if sort not in SORTS:
        raise Invalid(f"sort: must be one of {', '.join(SORTS)} (got {shown(sort)})")
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit: must be from 1 to {MAX_LIMIT} (got {limit})")


# A row's place in the list: by name, or by percent (highest first; none last), then by
# name (in any case: "acme" before "Beta" before "cobalt"; the key itself breaks a tie).
SortKey = tuple[int, Decimal, str, str]
_ZERO = Decimal(0)


def _place(key: str, percent: Decimal | None = _ZERO) -> SortKey:
    if percent is None:
        return (1, _ZERO, key.casefold(), key)
    return (0, -percent, key.casefold(), key)


def _sort_key(key: str, summary: _Summary, sort: str) -> SortKey:
    if sort == "name":
        return _place(key)
    return _place(key, None if summary.top is None else summary.top[_PERCENT])


def _encode(key: SortKey, sort: str) -> str:
    """An opaque cursor: the sort and the place of the last row shown (URL-safe base64)."""
    if sort == "name":
        body: list[object] = ["name", key[-1]]
    else:
        percent = None if key[0] else str(canonical(-key[1]))
        body = ["percent", percent, key[-1]]
    return base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> SortKey:
    """The place a cursor of `_encode` names; Invalid naming `cursor` for any other, or for
    one of the list in another order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        body = None
    if isinstance(body, list) and body and body[0] != sort and body[0] in SORTS:
        raise Invalid(f"cursor: a cursor of the list sorted by {body[0]}, not by {sort}")
    if (
        sort == "name"
        and isinstance(body, list)
        and len(body) == 2
        and body[0] == "name"
        and isinstance(body[1], str)
    ):
        return _place(body[1])
    if (
        sort == "percent"
        and isinstance(body, list)
        and len(body) == 3
        and body[0] == "percent"
        and isinstance(body[2], str)
    ):
        if body[1] is None:
            return _place(body[2], None)
        if isinstance(body[1], str):
            try:
                percent = Decimal(body[1])
            except ArithmeticError:
                percent = Decimal("NaN")
            if percent.is_finite():
                return _place(body[2], percent)
    raise Invalid(f"cursor: not a cursor this listing gave ({shown(cursor)})")
