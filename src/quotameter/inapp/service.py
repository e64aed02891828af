"""What a stream sends: the customer's in-app notices after an id, and its current access."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements.service import balance
from quotameter.notifications import service as notices
from quotameter.notifications.scheduler import settle_before_read
from quotameter.notifications.service import as_dict
from quotameter.timeutil import to_us

BATCH = 500


def in_app(row: Any) -> bool:
    return bool(orjson.loads(row.recipients).get("in_app"))


def latest_id(engine: Engine, customer: str) -> int:
    """The newest notice id of the customer: a stream opened without `Last-Event-ID` sends
    what comes after it."""
    with engine.connect() as conn:
        return notices.latest_id(conn, customer)


def opening(
    engine: Engine, catalogs: CatalogCache, customer: str, clock: Callable[[], datetime]
) -> dict[str, Any]:
    """Settle the customer's pending evaluation (404 for a stranger), then its access per
    feature now: the `state` event a stream starts with."""
    settle_before_read(engine, catalogs, customer, clock)
    now = clock()
    with engine.connect() as conn:
        catalog = catalogs.current(conn)
        ctx = Context(conn, catalog)
        view = customers.view(ctx, customer, to_us(now))
        features = {
            feature: {"has_access": balance(ctx, customer, feature, now).standing.has_access}
            for feature in sorted(view.plan.entitlements)
        }
    return {"customer": customer, "plan": view.plan_name, "at": now, "features": features}


def after(
    engine: Engine,
    catalogs: CatalogCache,
    customer: str,
    clock: Callable[[], datetime],
    last: int,
    every_type: bool,
) -> tuple[list[dict[str, Any]], int, bool]:
    """The notices to send after id `last` (in-app ones, or all with `every_type`), the id
    to continue after, and whether more are waiting past it. Usage committed meanwhile is evaluated
    first.

    Ids are read in order once: the in-app notices (blocks and restores) of one customer are
    recorded under its evaluation lock, which is held until commit, so they become visible
    in id order."""
    settle_before_read(engine, catalogs, customer, clock)
    with engine.connect() as conn:
        rows = notices.listing(conn, customer, last, BATCH)
    if rows:
        last = rows[-1].id
    return [as_dict(r) for r in rows if every_type or in_app(r)], last, len(rows) == BATCH
