"""A customer as it stood at an instant: catalog values, changed by the recorded history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row

from quotameter.catalog.model import CustomerSpec, PlanSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.context import Context
from quotameter.customers import repository
from quotameter.errors import Invalid, NotFound


@dataclass(frozen=True)
class CustomerView:
    key: str
    spec: CustomerSpec  # contact settings and auto_upgrade as in force now
    plan_name: str  # the subscription at the instant asked about
    plan: PlanSpec


def view(ctx: Context, customer: str, at_us: int) -> CustomerView:
    conn, catalog = ctx.conn, ctx.catalog
    spec = catalog.spec.customers.get(customer)
    if spec is None:
        raise NotFound(f"customer: unknown customer {customer!r}")
    pretend = ctx.pretend.get(customer)
    if pretend is None:
        overrides, recorded = repository.settings_and_plan_at(conn, customer, at_us)
    else:
        overrides, recorded = repository.settings(conn, customer), None
    if overrides:
        spec = spec.model_copy(update=overrides)
    plan_name = pretend or recorded or spec.plan
    plan = catalog.spec.plans.get(plan_name)
    if plan is None:  # the plan was removed from the catalog since: fall back to the catalog's
        plan_name, plan = spec.plan, catalog.spec.plans[spec.plan]
    return CustomerView(customer, spec, plan_name, plan)


def plans_at(ctx: Context, at_us: int) -> dict[str, str]:
    """The plan in force at `at_us` of every customer of the catalog, in one query: the last
    recorded change, else the catalog's (as `view` resolves one customer)."""
    catalog = ctx.catalog.spec
    recorded = repository.plans_at(ctx.conn, at_us)
    out = {}
    for key, spec in catalog.customers.items():
        plan = recorded.get(key)
        out[key] = plan if plan is not None and plan in catalog.plans else spec.plan
    return out


def seats_at(ctx: Context, customer: str, at_us: int) -> int:
    return _or_catalog(ctx, customer, repository.seats_at(ctx.conn, customer, at_us))


def highest_seats(ctx: Context, customer: str, start_us: int, at_us: int) -> int:
    """The highest paid-seat count from the period's start up to `at`."""
    recorded, later = repository.seats_through(ctx.conn, customer, start_us, at_us)
    first = _or_catalog(ctx, customer, recorded)
    return first if later is None else max(first, later)


def _or_catalog(ctx: Context, customer: str, recorded: int | None) -> int:
    """A recorded seat count, else the catalog's."""
    return ctx.catalog.spec.customers[customer].seats if recorded is None else recorded


SETTINGS = ("admins", "owner", "members", "auto_upgrade")


def require(catalog: LoadedCatalog, customer: str) -> CustomerSpec:
    """The customer's spec in the catalog; NotFound naming it when there is none."""
    spec = catalog.spec.customers.get(customer)
    if spec is None:
        raise NotFound(f"customer: unknown customer {customer!r}")
    return spec


def check_plan(catalog: LoadedCatalog, customer: str, plan: str) -> None:
    """NotFound for an unknown customer, Invalid for an unknown plan."""
    require(catalog, customer)
    if plan not in catalog.spec.plans:
        raise Invalid(
            f"plan: unknown plan {plan!r} (known: {', '.join(sorted(catalog.spec.plans))})"
        )


def change(
    ctx: Context,
    customer: str,
    *,
    seats: int | None,
    settings: dict[str, object],
    effective_us: int,
    recorded_us: int,
) -> None:
    """Seat changes are kept as history; contact settings and auto_upgrade are current values.
    (Refusing a change inside a finalized period is the caller's: usecases.customers.)"""
    conn, catalog = ctx.conn, ctx.catalog
    spec = require(catalog, customer)
    if seats is not None:
        repository.add_seats(conn, customer, seats, effective_us, recorded_us)
    if settings:
        merged = {**repository.settings(conn, customer), **settings}
        try:
            CustomerSpec.model_validate({**spec.model_dump(), **merged})
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            raise Invalid(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        repository.save_settings(conn, customer, merged)


def change_plan(
    ctx: Context,
    customer: str,
    plan: str,
    effective_us: int,
    recorded_us: int,
    reason: str = "manual",
) -> None:
    """Record a move to `plan` from `effective_us` (checked: a known customer and plan)."""
    conn, catalog = ctx.conn, ctx.catalog
    check_plan(catalog, customer, plan)
    repository.add_plan(conn, customer, plan, effective_us, reason, recorded_us)


def plan_history(conn: Connection, customer: str) -> list[Row[Any]]:
    """The customer's recorded plan changes (plan, effective_us, reason), oldest first."""
    return repository.plan_history(conn, customer)


def recorded(conn: Connection, customers: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per kind (seat change, plan change, settings change), how many each customer has."""
    return repository.recorded(conn, customers)


def first_changes(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the earliest instant a seat or plan change of it takes effect (customers
    with none left out)."""
    return repository.first_changes(conn, customers)


def last_recorded_change(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last seat or plan change effective in [lo, hi) was recorded."""
    return repository.last_recorded_change(conn, customer, lo, hi)


def plan_changes_between(conn: Connection, customer: str, after_us: int, upto_us: int) -> list[Any]:
    """Plan changes effective in (after, upto], in order: plan, effective_us, reason."""
    return repository.plan_changes_between(conn, customer, after_us, upto_us)
