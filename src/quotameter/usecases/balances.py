"""Read a balance: from the per-process cache when nothing it depends on changed, else
computed, after settling an evaluation the customer still owes (an auto-upgrade may be due).

What a cached balance depends on is spread over three domains (the catalog in force, the
customer's change counter, its pending evaluation); each gives its part of one statement, so
a cache hit costs one round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from quotameter.catalog import service as catalogs
from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers import state
from quotameter.entitlements.cache import BalanceCache
from quotameter.entitlements.service import Balance, balance
from quotameter.notifications import scheduler
from quotameter.notifications import service as notices
from quotameter.timeutil import to_us

FRESHNESS = text(
    f"SELECT {catalogs.LATEST_VERSION} AS catalog_version, {state.VERSION} AS version, "
    f"{notices.PENDING} AS pending"
)
"""One row: what a cached balance of customer `:c` must still match (see `cached`)."""


def cached(
    found: tuple[Any, ...], cache: BalanceCache, customer: str, feature: str, when: datetime
) -> Balance | None:
    """The cached balance if the FRESHNESS row `found` says it is still current; None when
    the customer owes an evaluation, or anything the balance depends on changed since."""
    catalog_version, version, owed = found
    if owed:
        return None
    return cache.lookup(customer, feature, when, catalog_version or 0, version or 0)


def pending(conn: Connection, customer: str) -> bool:
    """Does the customer owe an evaluation (usage recorded since the last one)?"""
    return notices.is_pending(conn, customer)


def settle(
    engine: Engine, catalog_cache: CatalogCache, customer: str, clock: Callable[[], datetime]
) -> None:
    """Evaluate what the customer owes now (a write: its own transaction)."""
    scheduler.settle_before_read(engine, catalog_cache, customer, clock)


def compute(
    conn: Connection,
    catalog_cache: CatalogCache,
    cache: BalanceCache | None,
    customer: str,
    feature: str,
    when: datetime,
) -> Balance:
    """The balance at `when`, through the cache when there is one (which keeps it)."""
    return _compute(Context(conn, catalog_cache.current(conn)), cache, customer, feature, when)


def compute_all(
    conn: Connection,
    catalog_cache: CatalogCache,
    cache: BalanceCache | None,
    customer: str,
    when: datetime,
) -> tuple[str, list[Balance]]:
    """The plan in force at `when` and every balance of it, by feature (NotFound: a stranger).
    The catalog in force is read once for them all."""
    ctx = Context(conn, catalog_cache.current(conn))
    view = customers.view(ctx, customer, to_us(when))
    found = [
        _compute(ctx, cache, customer, feature, when) for feature in sorted(view.plan.entitlements)
    ]
    return view.plan_name, found


def _compute(
    ctx: Context, cache: BalanceCache | None, customer: str, feature: str, when: datetime
) -> Balance:
    if cache is None:
        return balance(ctx, customer, feature, when)
    return cache.balance(ctx.conn, ctx.catalog, customer, feature, when)
