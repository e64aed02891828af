"""Consume: check a feature's balance and record the usage in one atomic step.

A consumption is recorded as exactly ONE event, whatever the amount: source
`quotameter.consume` (reserved: ingest refuses it from anyone else), id
`{customer}/{feature}/{id}` (customer and feature names hold no `/`), type the meter's event
type, time `at`, and data the meter's filter values (so that it counts like any other event
of the meter) plus the amount:

- `count` meter: the whole number of units in `data["quotameter.units"]`; the meter counts
  the event as that many (`meters.model.CONSUME_UNITS`);
- `sum` meter: the amount in the meter's `value_property`.

Consumes recorded before one event per consumption was the rule are one event per unit
(`{id}`, `{id}#2`, … stored together): each still counts one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.customers import service as customers
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance, balance, meter_of
from quotameter.errors import Invalid
from quotameter.events import repository as event_store
from quotameter.events.service import prepare, store
from quotameter.invoices import repository as invoices
from quotameter.meters.model import CONSUME_SOURCE, CONSUME_UNITS, LARGEST, MAX_CONSUME_UNITS
from quotameter.notifications.scheduler import settle
from quotameter.store.engine import lock_keys
from quotameter.timeutil import rfc3339, to_us


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


def consume(conn: Connection, catalog: LoadedCatalog, req: ConsumeRequest, recorded_us: int) -> Consumption:
    """Check and record in one step (the transaction is the caller's). Callers of the same
    customer and meter are serialized (SQLite: the write transaction; PostgreSQL: an advisory
    lock), so the check always sees every earlier consumption and a hard limit is never
    overshot. Idempotent on `req.id`."""
    at_us = to_us(req.at)
    view = customers.view(conn, catalog, req.customer, at_us)
    ent, meter = meter_of(catalog, view, req.feature)
    _check(req, ent.meter, meter)
    # The invoice lock first (store takes it again), as every writer does: taken after the
    # locks and rows `settle` holds, it could close a cycle with a finalization in progress.
    invoices.hold_open(conn, [req.customer])
    lock_keys(conn, [f"consume\x01{req.customer}\x01{ent.meter}"])
    settle(conn, catalog, req.customer, lambda: req.at)  # an auto-upgrade owed to earlier usage happens first
    base_id = f"{req.customer}/{req.feature}/{req.id}"
    if event_store.exists(conn, CONSUME_SOURCE, base_id):
        return Consumption(True, "already recorded", True,
                           balance(conn, catalog, req.customer, req.feature, req.at, whole_period=True))
    # Every consumption recorded before this lock was taken counts, whatever its timestamp.
    before = balance(conn, catalog, req.customer, req.feature, req.at, whole_period=True)
    allowed, reason = model.allows(before.standing, req.amount)
    if not allowed:
        return Consumption(False, reason, False, before)
    event = _event(base_id, meter, req)
    result = store(conn, catalog, prepare(catalog, [event], recorded_us, consume=True))
    if result.rejected:
        raise Invalid(f"amount: could not be recorded ({result.rejected[0]['error']})")
    return Consumption(True, reason, False, balance(conn, catalog, req.customer, req.feature, req.at,
                                                    whole_period=True))


def _check(req: ConsumeRequest, name: str, meter: MeterSpec) -> None:
    if meter.aggregation not in ("count", "sum"):
        raise Invalid(f"feature: consume records usage of count and sum meters; meter {name!r} "
                      f"is {meter.aggregation!r}, send its events instead")
    if req.amount <= 0:
        raise Invalid("amount: must be greater than 0")
    if meter.aggregation == "count":
        if req.amount != req.amount.to_integral_value():
            raise Invalid(f"amount: meter {name!r} counts whole events (got {req.amount})")
        if req.amount > MAX_CONSUME_UNITS:
            raise Invalid(f"amount: at most {MAX_CONSUME_UNITS} units of meter {name!r} per consume (got {req.amount})")
    elif req.amount >= LARGEST:
        raise Invalid(f"amount: must be less than 10^15 (got {req.amount})")


def _event(event_id: str, meter: MeterSpec, req: ConsumeRequest) -> dict[str, object]:
    data: dict[str, object] = {key: values[0] for key, values in meter.filter.items()}
    if meter.aggregation == "sum":
        data[meter.value_property] = format(req.amount, "f")  # type: ignore[index]
    else:
        data[CONSUME_UNITS] = int(req.amount)
    return {"specversion": "1.0", "id": event_id, "source": CONSUME_SOURCE, "type": meter.event_type,
            "subject": req.customer, "time": rfc3339(req.at), "data": data}
