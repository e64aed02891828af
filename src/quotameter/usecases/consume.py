"""Consume: check a feature's balance and record the usage in one atomic step.

A consumption is named by the caller's `id`, unique per customer and feature, and is
recorded as exactly ONE event, whatever the amount:

- source `quotameter.consume` (reserved: ingest refuses it from anyone else), id
  `{customer}/{feature}/{id}` (customer and feature names hold no `/`), type the meter's
  event type, time `at`, and data the meter's filter values (so that it counts like any
  other event of the meter) plus the amount:
  - `count` meter: the whole number of units in `data["quotameter.units"]`; the meter counts
    the event as that many (`meters.model.CONSUME_UNITS`);
  - `sum` meter: the amount in the meter's `value_property`.
- The same request is the same customer, feature, `id` and amount: repeating it records
  nothing and answers the balance with `duplicate: true`. The same `id` with another amount
  is a conflict (409 naming `id`, with the amount recorded first). `at` is not compared: a
  retry without `at` is stamped later than the first try, and the first recording stands.
- An `at` inside an invoiced (finalized) period is a conflict (409 naming `at`), as for every
  other change effective there; a repeat of a consumption recorded before stays a duplicate.

Consumes recorded before one event per consumption was the rule are one event per unit
(`{id}`, `{id}#2`, … stored together): each still counts one, and a repeat of such a
consumption compares with their number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance, balance, meter_of
from quotameter.errors import Conflict, Invalid
from quotameter.events import service as event_store
from quotameter.invoices import service as invoices
from quotameter.invoices.service import refuse_if_finalized
from quotameter.meters.model import CONSUME_SOURCE, CONSUME_UNITS, LARGEST, MAX_CONSUME_UNITS
from quotameter.notifications.scheduler import settle
from quotameter.store.engine import lock_keys
from quotameter.timeutil import rfc3339, to_us
from quotameter.usecases.record import prepare, store

_CONTROL = re.compile(r"[\x00-\x1f]")
_UNIT_SUFFIX = re.compile(r"#([0-9]+)")


@dataclass(frozen=True)
class ConsumeRequest:
    customer: str
    feature: str
    id: str
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class Consumption:
    allowed: bool
    reason: str
    duplicate: bool
    balance: Balance


def consume(
    ctx: Context,
    req: ConsumeRequest,
    recorded_us: int,
    clock: Callable[[], datetime],
) -> Consumption:
    """Check and record in one step (the transaction is the caller's). Callers of the same
    customer and meter are serialized (SQLite: the write transaction; PostgreSQL: an advisory
    lock), so the check always sees every earlier consumption and a hard limit is never
    overshot. Idempotent on the request (see the module's docstring)."""
    conn, catalog = ctx.conn, ctx.catalog
    at_us = to_us(req.at)
    view = customers.view(ctx, req.customer, at_us)
    ent, meter = meter_of(catalog, view, req.feature)
    _check(req, ent.meter, meter)
    # The invoice lock first (store takes it again), as every writer does: taken after the
    # locks and rows `settle` holds, it could close a cycle with a finalization in progress.
    invoices.hold_open(conn, [req.customer])
    lock_keys(conn, [f"consume\x01{req.customer}\x01{ent.meter}"])
    # An auto-upgrade owed to earlier usage happens first. Evaluated now, not at `at`: the
    # usage waiting to be evaluated is today's, whatever instant this consumption names.
    settle(ctx, req.customer, clock)
    event_id = f"{req.customer}/{req.feature}/{req.id}"
    if (earlier := event_store.stored(conn, CONSUME_SOURCE, event_id)) is not None:
        return _repeat(ctx, req, meter, event_id, earlier)
    refuse_if_finalized(conn, req.customer, at_us, field="at")
    # Every consumption recorded before this lock was taken counts, whatever its timestamp.
    before = balance(ctx, req.customer, req.feature, req.at, whole_period=True)
    allowed, reason = model.allows(before.standing, req.amount)
    if not allowed:
        return Consumption(False, reason, False, before)
    event = _event(event_id, meter, req)
    result = store(ctx, prepare(catalog, [event], recorded_us, consume=True))
    if result.rejected:
        raise Invalid(f"amount: could not be recorded ({result.rejected[0]['error']})")
    if not result.accepted:
        # Recorded meanwhile by a consume of the same id that held another meter's lock (the
        # feature's meter differs between the two instants): the insert waited for it.
        return _repeat(
            ctx,
            req,
            meter,
            event_id,
            event_store.stored(conn, CONSUME_SOURCE, event_id),
        )
    return Consumption(
        True,
        reason,
        False,
        balance(ctx, req.customer, req.feature, req.at, whole_period=True),
    )


def _check(req: ConsumeRequest, name: str, meter: MeterSpec) -> None:
    if meter.aggregation not in ("count", "sum"):
        raise Invalid(
            f"feature: consume records usage of count and sum meters; meter {name!r} "
            f"is {meter.aggregation!r}, send its events instead"
        )
    if _CONTROL.search(req.id):
        raise Invalid("id: must not contain control characters (U+0000 to U+001F)")
    if req.amount <= 0:
        raise Invalid("amount: must be greater than 0")
    if meter.aggregation == "count":
        if req.amount != req.amount.to_integral_value():
            raise Invalid(f"amount: meter {name!r} counts whole events (got {req.amount})")
        if req.amount > MAX_CONSUME_UNITS:
            raise Invalid(
                f"amount: at most {MAX_CONSUME_UNITS} units of meter {name!r} per consume (got "
                f"{req.amount})"
            )
    elif req.amount >= LARGEST:
        raise Invalid(f"amount: must be less than 10^15 (got {req.amount})")


def _event(event_id: str, meter: MeterSpec, req: ConsumeRequest) -> dict[str, object]:
    data: dict[str, object] = {key: values[0] for key, values in meter.filter.items()}
    if meter.aggregation == "sum":
        assert meter.value_property is not None  # a sum meter names its value (catalog rule)
        data[meter.value_property] = format(req.amount, "f")
    else:
        data[CONSUME_UNITS] = int(req.amount)
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": CONSUME_SOURCE,
        "type": meter.event_type,
        "subject": req.customer,
        "time": rfc3339(req.at),
        "data": data,
    }


def _repeat(
    ctx: Context,
    req: ConsumeRequest,
    meter: MeterSpec,
    event_id: str,
    earlier: Any,
) -> Consumption:
    """The answer to an id recorded before: a duplicate when the amount is the same."""
    conn = ctx.conn
    recorded = _recorded_amount(conn, req, meter, event_id, earlier)
    if recorded != req.amount:
        raise Conflict(
            f"id: {req.id!r} already recorded a consumption of {model.fmt(recorded)} of "
            f"{req.feature!r} "
            f"for customer {req.customer!r} (asked: {model.fmt(req.amount)}); a repeat must ask "
            "the "
            "same amount, another consumption needs another id"
        )
    return Consumption(
        True,
        "already recorded",
        True,
        balance(ctx, req.customer, req.feature, req.at, whole_period=True),
    )


def _recorded_amount(
    conn: Connection, req: ConsumeRequest, meter: MeterSpec, event_id: str, row: Any
) -> Decimal:
    """The amount the consumption stored under `event_id` recorded."""
    data = orjson.loads(row.data)
    if CONSUME_UNITS in data:
        return Decimal(data[CONSUME_UNITS])
    if meter.aggregation == "sum" and meter.value_property in data:
        return Decimal(str(data[meter.value_property]))
    # One event per unit, `{id}`, `{id}#2`, …, all stored by one batch.
    together = set(
        event_store.ids_stored_with(
            conn, CONSUME_SOURCE, row.subject, row.type, row.time_us, row.received_us
        )
    )
    owner, hash_, k = event_id.rpartition("#")
    if hash_ and _UNIT_SUFFIX.fullmatch(f"#{k}") and owner in together:
        raise Conflict(
            f"id: {req.id!r} is taken by unit {k} of the consumption {req.id.rpartition('#')[0]!r} "
            f"of {req.feature!r} for customer {req.customer!r}, recorded one event per unit; "
            "another consumption needs another id"
        )
    return Decimal(
        1
        + sum(
            1
            for i in together
            if i.startswith(f"{event_id}#") and _UNIT_SUFFIX.fullmatch(i, len(event_id))
        )
    )
