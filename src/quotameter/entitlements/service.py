"""Balance reads: a feature's usage for the period that contains an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from quotameter.catalog.model import CustomerSpec, EntitlementSpec, MeterSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.errors import NotFound
from quotameter.meters import service as meters
from quotameter.periods import Period, period_containing
from quotameter.timeutil import to_us


@dataclass(frozen=True)
class Balance:
    customer: str
    feature: str
    meter: str
    unit: str
    usage: Decimal
    period: Period
    at: datetime
    level: Decimal | None  # gauges: the level held at `at`


def resolve(catalog: LoadedCatalog, customer: str, feature: str) -> tuple[CustomerSpec, EntitlementSpec, MeterSpec]:
    cust = catalog.spec.customers.get(customer)
    if cust is None:
        raise NotFound(f"customer: unknown customer {customer!r}")
    plan = catalog.spec.plans[cust.plan]
    ent = plan.entitlements.get(feature)
    if ent is None:
        known = ", ".join(sorted(plan.entitlements)) or "none"
        raise NotFound(f"feature: plan {cust.plan!r} of customer {customer!r} has no feature {feature!r} "
                       f"(it has: {known})")
    return cust, ent, catalog.spec.meters[ent.meter]


def period_of(cust: CustomerSpec, ent: EntitlementSpec, at: datetime) -> Period:
    return period_containing(ent.period, at, tz=cust.timezone, anchor=cust.billing_anchor)


def balance(conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, at: datetime) -> Balance:
    cust, ent, meter = resolve(catalog, customer, feature)
    period = period_of(cust, ent, at)
    at_us = to_us(at)
    usage = meters.usage(conn, meter, ent.meter, customer, to_us(period.start), to_us(period.end), at_us)
    level = meters.gauge_level(conn, ent.meter, customer, at_us) if meter.aggregation == "gauge" else None
    return Balance(customer, feature, ent.meter, meter.unit, usage, period, at, level)
