"""Invoices: the running one, finalization after the grace window, and what it closes.

The billing period of a customer is its monthly billing cycle (from `billing_anchor`, in
the customer's zone) when any entitlement of its plan is counted per `billing_cycle`,
and otherwise the calendar month in its zone; the plan is the one in force at the instant
asked about. A customer without `billing_anchor` has cycles from the 1st, so both agree.
Usage lines read each priced feature's balance at the last instant billed (for a plan
whose features all count per the billing period — every policy of the demo — that is the
billing period's usage; gauges bill their period maximum).

An invoice is finalized once its period has ended and the grace window has passed: a
frozen copy of its lines is stored under a unique (customer, period_start) key with
INSERT … ON CONFLICT DO NOTHING, so several processes finalize it exactly once. From then
on nothing before the end of the customer's last finalized period may change: events
stamped there are refused one by one, and a seat, plan or grant change effective there
is refused whole (409, naming `effective_at`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from quotameter.catalog.model import GraduatedPrice, OveragePrice, UnitPrice
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.customers import service as customers
from quotameter.customers.service import CustomerView
from quotameter.entitlements.service import balance
from quotameter.errors import Conflict
from quotameter.invoices import model, repository
from quotameter.invoices.model import FeatureUsage, Line, PlanChange, Topup
from quotameter.periods import Period, period_containing
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us

DEFAULT_GRACE = timedelta(days=1)
ONE_US = timedelta(microseconds=1)
# Periods finalized per customer in one call at most (a server down for years catches up
# over several calls instead of one long transaction chain).
MAX_PERIODS_PER_CALL = 36


@dataclass(frozen=True)
class Invoice:
    id: int | None  # None while running
    customer: str
    status: str  # upcoming | finalized
    period: Period
    plan: str
    currency: str
    lines: list[Line]
    total: Decimal
    at: datetime  # upcoming: the instant it runs to; finalized: when it was finalized

    @property
    def number(self) -> str:
        return f"{self.customer}-{self.period.start.strftime('%Y%m%d')}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "number": self.number, "customer": self.customer, "status": self.status,
                "period": {"start": self.period.start, "end": self.period.end}, "plan": self.plan,
                "currency": self.currency, "lines": [line.as_dict() for line in self.lines],
                "total": format(self.total, "f"), "at": self.at}


def billing_period(view: CustomerView, at: datetime) -> Period:
    cycle = any(ent.period == "billing_cycle" for ent in view.plan.entitlements.values())
    return period_containing("billing_cycle" if cycle else "calendar_month", at, tz=view.spec.timezone,
                             anchor=view.spec.billing_anchor)


def period_at(conn: Connection, catalog: LoadedCatalog, customer: str, at: datetime) -> Period:
    return billing_period(customers.view(conn, catalog, customer, to_us(at)), at)


def compute(conn: Connection, catalog: LoadedCatalog, customer: str, period: Period, upto: datetime) -> Invoice:
    """The invoice of `period` with everything up to `upto` (inclusive, within the period)."""
    start_us, end_us = to_us(period.start), to_us(period.end)
    upto_us = min(to_us(upto), end_us - 1)
    upto = from_us(upto_us)
    first = customers.view(conn, catalog, customer, start_us)
    final = customers.view(conn, catalog, customer, upto_us)
    currency = final.plan.currency
    seats = customers.highest_seats(conn, catalog, customer, start_us, upto_us)
    lines = model.fee_lines(first.plan_name, first.plan, seats)
    lines += _prorations(conn, catalog, customer, first, period, upto_us, seats, currency)
    usage: dict[str, FeatureUsage] = {}
    for price in final.plan.prices:
        if isinstance(price, (UnitPrice, OveragePrice, GraduatedPrice)) and price.feature not in usage:
            b = balance(conn, catalog, customer, price.feature, upto)
            usage[price.feature] = FeatureUsage(price.feature, b.unit, b.usage, b.standing.overage)
    lines += model.usage_lines(final.plan_name, final.plan, usage)
    topups = [Topup(r.grant_id, r.feature, r.blocks, Decimal(r.price).normalize(), from_us(r.effective_us))
              for r in repository.topups(conn, customer, start_us, upto_us) if r.price is not None and r.blocks]
    lines += model.topup_lines(final.plan_name, currency, topups)
    return Invoice(None, customer, "upcoming", period, final.plan_name, currency, lines, model.total(lines), upto)


def _prorations(conn: Connection, catalog: LoadedCatalog, customer: str, first: CustomerView, period: Period,
                upto_us: int, seats: int, currency: str) -> list[Line]:
    start_us, end_us = to_us(period.start), to_us(period.end)
    lines = []
    old_name, old_plan = first.plan_name, first.plan
    for change in repository.plan_changes_between(conn, customer, start_us, upto_us):
        new_plan = catalog.spec.plans.get(change.plan)
        if new_plan is None or change.plan == old_name:
            continue
        left = Decimal(end_us - change.effective_us) / Decimal(end_us - start_us)
        line = model.proration_line(PlanChange(from_us(change.effective_us), old_name, change.plan,
                                               change.reason, left),
                                    model.plan_fee(old_plan, seats), model.plan_fee(new_plan, seats), currency)
        if line is not None:
            lines.append(line)
        old_name, old_plan = change.plan, new_plan
    return lines


def upcoming(conn: Connection, catalog: LoadedCatalog, customer: str, at: datetime) -> Invoice:
    """The invoice of the period containing `at`, as it stands at `at` (the finalized one
    when that period is already finalized)."""
    period = period_at(conn, catalog, customer, at)
    stored = repository.for_period(conn, customer, to_us(period.start))
    if stored is not None:
        return from_row(stored)
    return compute(conn, catalog, customer, period, at)


def finalize(conn: Connection, catalog: LoadedCatalog, customer: str, period: Period, now: datetime) -> int | None:
    """Freeze the invoice of `period`; its id, or None if it was finalized already."""
    repository.hold_closing(conn, customer)
    invoice = compute(conn, catalog, customer, period, period.end - ONE_US)
    return repository.add(conn, {
        "customer": customer, "period_start_us": to_us(period.start), "period_end_us": to_us(period.end),
        "plan": invoice.plan, "currency": invoice.currency, "total": invoice.total,
        "lines": orjson.dumps([_line_json(line) for line in invoice.lines]).decode(),
        "finalized_us": to_us(now)})


def finalize_due(engine: Engine, catalogs: CatalogCache, now: datetime, grace: timedelta = DEFAULT_GRACE,
                 memo: MutableMapping[tuple[int, str], datetime] | None = None) -> int:
    """Finalize every period that ended at least `grace` before `now` and is not finalized
    yet, each in its own transaction; how many this call finalized.

    Billing starts with the period containing the customer's earliest recorded activity
    (event, seat or plan change, grant), or without any, the first catalog's application.
    `memo` (kept by a long-running caller) remembers until when a customer has nothing due.
    """
    cutoff = now - grace
    with engine.connect() as conn:
        catalog = catalogs.current(conn)
        through = repository.finalized_through_many(conn, None)
        first_catalog = repository.first_catalog_us(conn)
    created = 0
    for customer in sorted(catalog.spec.customers):
        key = (catalog.version, customer)
        if memo is not None and key in memo and now < memo[key]:
            continue
        with engine.connect() as conn:
            current = period_at(conn, catalog, customer, cutoff)  # not due yet
            last_end = through.get(customer)
            start_us = last_end if last_end is not None else _billing_start(conn, customer, first_catalog)
        if memo is not None:
            memo[key] = current.end + grace
        if start_us is None or start_us >= to_us(current.start):
            continue
        t = from_us(start_us)
        for _ in range(MAX_PERIODS_PER_CALL):
            if t >= current.start:
                break
            with unit_of_work(engine) as conn:
                period = period_at(conn, catalog, customer, t)
                if last_end is not None and period.start < t:  # the billing rule changed: no overlap
                    period = Period(t, period.end)
                period = Period(period.start, min(period.end, current.start))
                if finalize(conn, catalog, customer, period, now) is not None:
                    created += 1
            t = period.end
    return created


def _billing_start(conn: Connection, customer: str, first_catalog: int | None) -> int | None:
    earliest = repository.earliest_activity(conn, customer)
    return earliest if earliest is not None else first_catalog


# --- what finalization closes ---------------------------------------------------------------


def closed_message(conn: Connection, customer: str, t_us: int, field: str, what: str) -> str:
    row = repository.containing(conn, customer, t_us)
    periods = [] if row is None else [(row.period_start_us, row.period_end_us)]
    return model.closed_reason(field, customer, t_us, periods, repository.finalized_through(conn, customer) or 0, what)


def refuse_if_finalized(conn: Connection, customer: str, effective_us: int, field: str = "effective_at") -> None:
    """A change effective inside a finalized period would change a final invoice: 409 naming `field`."""
    repository.hold_open(conn, [customer])
    through = repository.finalized_through(conn, customer)
    if through is not None and effective_us < through:
        raise Conflict(closed_message(conn, customer, effective_us, field,
                                      "a change effective there can no longer be recorded"))


# --- stored invoices ------------------------------------------------------------------------


def _line_json(line: Line) -> dict[str, Any]:
    out = line.as_dict()
    out["quantity"] = format(line.quantity, "f")
    return out


def from_row(row: Any) -> Invoice:
    lines = [Line(d["kind"], d["description"], d["plan"], d["feature"], Decimal(d["quantity"]),
                  None if d["unit_price"] is None else Decimal(d["unit_price"]), Decimal(d["amount"]))
             for d in orjson.loads(row.lines)]
    total = model.total(lines)
    return Invoice(row.id, row.customer, "finalized", Period(from_us(row.period_start_us), from_us(row.period_end_us)),
                   row.plan, row.currency, lines, total, from_us(row.finalized_us))


def get(conn: Connection, catalog: LoadedCatalog, customer: str, invoice_id: int) -> Invoice:
    from quotameter.errors import NotFound

    customers.view(conn, catalog, customer, 0)  # 404 for an unknown customer
    row = repository.get(conn, customer, invoice_id)
    if row is None:
        raise NotFound(f"invoice: customer {customer!r} has no finalized invoice {invoice_id}")
    return from_row(row)


def listing(conn: Connection, catalog: LoadedCatalog, customer: str) -> list[Invoice]:
    customers.view(conn, catalog, customer, 0)
    return [from_row(row) for row in repository.listing(conn, customer)]
