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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from quotameter.catalog import service as catalogs_service
from quotameter.catalog.model import (
    GraduatedPrice,
    OveragePrice,
    PackagePrice,
    UnitPrice,
    VolumePrice,
)
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers import state as customer_state
from quotameter.customers.service import CustomerView
from quotameter.decimals import canonical
from quotameter.entitlements.service import balance
from quotameter.errors import Conflict, NotFound
from quotameter.events import service as event_log
from quotameter.grants import service as grants
from quotameter.invoices import model, repository
from quotameter.invoices.model import FeatureUsage, Line, PlanChange, Topup
from quotameter.money import amount_text
from quotameter.periods import Period, period_containing
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us

log = logging.getLogger("quotameter.invoices")

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
    timezone: str = "UTC"  # the customer's zone, which dates its number
    hypothetical: bool = False  # priced on another plan than the customer's (what if)

    @property
    def number(self) -> str:
        return model.number(self.customer, self.period.start, self.timezone)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "customer": self.customer,
            "status": self.status,
            "period": {"start": self.period.start, "end": self.period.end},
            "plan": self.plan,
            "currency": self.currency,
            "lines": [line.as_dict(self.currency) for line in self.lines],
            "total": amount_text(self.total, self.currency),
            "at": self.at,
            "hypothetical": self.hypothetical,
        }


USAGE_PRICES = (UnitPrice, OveragePrice, GraduatedPrice, VolumePrice, PackagePrice)


def billing_period(view: CustomerView, at: datetime) -> Period:
    cycle = any(ent.period == "billing_cycle" for ent in view.plan.entitlements.values())
    return period_containing(
        "billing_cycle" if cycle else "calendar_month",
        at,
        tz=view.spec.timezone,
        anchor=view.spec.billing_anchor,
    )


def period_at(ctx: Context, customer: str, at: datetime) -> Period:
    return billing_period(customers.view(ctx, customer, to_us(at)), at)


def compute(ctx: Context, customer: str, period: Period, upto: datetime) -> Invoice:
    """The invoice of `period` with everything up to `upto` (inclusive, within the period)."""
    conn = ctx.conn
    start_us, end_us = to_us(period.start), to_us(period.end)
    upto_us = min(to_us(upto), end_us - 1)
    upto = from_us(upto_us)
    first = customers.view(ctx, customer, start_us)
    final = customers.view(ctx, customer, upto_us)
    currency = final.plan.currency
    seats = customers.highest_seats(ctx, customer, start_us, upto_us)
    lines = model.fee_lines(first.plan_name, first.plan, seats)
    lines += _prorations(ctx, customer, first, period, upto_us, seats, currency)
    usage: dict[str, FeatureUsage] = {}
    for price in final.plan.prices:
        if isinstance(price, USAGE_PRICES) and price.feature not in usage:
            b = balance(ctx, customer, price.feature, upto)
            usage[price.feature] = FeatureUsage(price.feature, b.unit, b.usage, b.standing.overage)
    lines += model.usage_lines(final.plan_name, final.plan, usage)
    topups = [
        Topup(r.grant_id, r.feature, r.blocks, canonical(Decimal(r.price)), from_us(r.effective_us))
        for r in grants.topups(conn, customer, start_us, upto_us)
        if r.price is not None and r.blocks
    ]
    lines += model.topup_lines(final.plan_name, currency, topups)
    floor = model.minimum_line(final.plan_name, final.plan, lines)
    if floor is not None:
        lines.append(floor)
    return Invoice(
        None,
        customer,
        "upcoming",
        period,
        final.plan_name,
        currency,
        lines,
        model.total(lines),
        upto,
        final.spec.timezone,
        hypothetical=customer in ctx.pretend,
    )


def _prorations(
    ctx: Context,
    customer: str,
    first: CustomerView,
    period: Period,
    upto_us: int,
    seats: int,
    currency: str,
) -> list[Line]:
    conn, catalog = ctx.conn, ctx.catalog
    start_us, end_us = to_us(period.start), to_us(period.end)
    lines: list[Line] = []
    if customer in ctx.pretend:  # one plan for the whole period: nothing to prorate
        return lines
    old_name, old_plan = first.plan_name, first.plan
    for change in customers.plan_changes_between(conn, customer, start_us, upto_us):
        new_plan = catalog.spec.plans.get(change.plan)
        if new_plan is None or change.plan == old_name:
            continue
        left = Decimal(end_us - change.effective_us) / Decimal(end_us - start_us)
        line = model.proration_line(
            PlanChange(from_us(change.effective_us), old_name, change.plan, change.reason, left),
            model.plan_fee(old_plan, seats),
            model.plan_fee(new_plan, seats),
            currency,
        )
        if line is not None:
            lines.append(line)
        old_name, old_plan = change.plan, new_plan
    return lines


def upcoming(ctx: Context, customer: str, at: datetime) -> Invoice:
    """The invoice of the period containing `at`, as it stands at `at` (the finalized one
    when that period is already finalized)."""
    conn = ctx.conn
    view = customers.view(ctx, customer, to_us(at))
    period = billing_period(view, at)
    stored = repository.for_period(conn, customer, to_us(period.start))
    if stored is not None:
        return from_row(stored, view.spec.timezone)
    return compute(ctx, customer, period, at)


def what_if(ctx: Context, customer: str, plan: str, at: datetime) -> Invoice:
    """The period containing `at` priced up to `at` as if the customer had been on `plan` all
    along: the same events, seats and grants; marked hypothetical, stored nowhere."""
    customers.check_plan(ctx.catalog, customer, plan)
    pretend = Context(ctx.conn, ctx.catalog, {**ctx.pretend, customer: plan})
    view = customers.view(pretend, customer, to_us(at))
    return compute(pretend, customer, billing_period(view, at), at)


def finalize(ctx: Context, customer: str, period: Period, now: datetime) -> int | None:
    """Freeze the invoice of `period`; its id, or None if it was finalized already."""
    conn = ctx.conn
    repository.hold_closing(conn, customer)
    invoice = compute(ctx, customer, period, period.end - ONE_US)
    return repository.add(
        conn,
        {
            "customer": customer,
            "period_start_us": to_us(period.start),
            "period_end_us": to_us(period.end),
            "plan": invoice.plan,
            "currency": invoice.currency,
            "total": invoice.total,
            "lines": orjson.dumps(
                [_line_json(line, invoice.currency) for line in invoice.lines]
            ).decode(),
            "finalized_us": to_us(now),
        },
    )


@dataclass
class FinalizerState:
    """What a long-running finalizer remembers from one pass to the next."""

    # customer -> (catalog version, the customer's change counter, nothing due before this
    # instant): valid only while both are unchanged, since any recorded change (a late event,
    # a seat or plan change, a grant) can make an earlier period billable.
    quiet: dict[str, tuple[int, int, datetime]] = field(default_factory=dict)
    # customer -> the start of the period whose finalization failed (None: before any period),
    # as last logged; logged again only when that changes or finalization succeeds.
    failing: dict[str, datetime | None] = field(default_factory=dict)


class _PeriodFailed(Exception):
    def __init__(self, period_start: datetime | None) -> None:
        super().__init__(period_start)
        self.period_start = period_start


def finalize_due(
    engine: Engine,
    catalogs: CatalogCache,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    state: FinalizerState | None = None,
    *,
    after_last_change: bool = False,
) -> int:
    """Finalize every period that ended at least `grace` before `now` and is not finalized
    yet, each in its own transaction; how many this call finalized.

    `after_last_change` (the background finalizer) also waits until `grace` has passed since
    the period's last change (an event received, a seat or plan change or a grant recorded,
    stamped in it): a late event for a past period gets the same grace window as one at its
    end, so the rest of a backfill arriving in batches is not refused halfway. Without it (an
    operator asking now) every period that has ended is finalized.

    Billing starts with the period containing the customer's earliest recorded activity
    (event, seat or plan change, grant), or without any, the first catalog's application.
    A customer whose finalization fails is logged (once while it keeps failing on the same
    period, given a `state` kept across calls) and skipped: the others are finalized all
    the same, and it is tried again on the next call. `state` also lets a long-running
    caller skip the customers with nothing due, as long as nothing was recorded for them.
    """
    state = state if state is not None else FinalizerState()
    with engine.connect() as conn:
        catalog = catalogs.current(conn)
        through = repository.finalized_through_many(conn, None)
        first_catalog = catalogs_service.first_applied_us(conn)
        versions = customer_state.versions(conn)
    created = 0
    for gone in set(state.failing) - set(catalog.spec.customers):
        del state.failing[gone]
    stamps = {c: (catalog.version, versions.get(c, 0)) for c in catalog.spec.customers}
    due = [
        c
        for c in sorted(catalog.spec.customers)
        if (quiet := state.quiet.get(c)) is None or quiet[:2] != stamps[c] or now >= quiet[2]
    ]
    with engine.connect() as conn:
        starts = _billing_starts(conn, [c for c in due if c not in through], first_catalog)
    for customer in due:
        stamp = stamps[customer]
        try:
            made, quiet_until = _finalize_customer(
                engine,
                catalog,
                customer,
                now,
                grace,
                through.get(customer),
                starts.get(customer),
                first_catalog,
                after_last_change,
            )
        except _PeriodFailed as failed:
            _failed(state, customer, failed.period_start, failed.__cause__ or failed)
            continue
        created += made
        if quiet_until is not None:
            state.quiet[customer] = (*stamp, quiet_until)
        if customer in state.failing:
            del state.failing[customer]
            log.info("invoices of customer %r are finalized again", customer)
    return created


def _finalize_customer(
    engine: Engine,
    catalog: LoadedCatalog,
    customer: str,
    now: datetime,
    grace: timedelta,
    last_end: int | None,
    billing_start: int | None,
    first_catalog: int | None,
    after_last_change: bool,
) -> tuple[int, datetime | None]:
    """Finalize the customer's due periods, from the end of its last finalized one, or
    without any from where its billing starts (`billing_start`, as the pass read it for all
    customers): (how many, the instant before which nothing more is due, or None when
    periods are left for the next call)."""
    try:
        with engine.connect() as conn:
            current = period_at(Context(conn, catalog), customer, now - grace)  # not due yet
            start_us = last_end if last_end is not None else billing_start
            if last_end is None and start_us is not None and start_us < to_us(current.start):
                # Something is due: read it again, as an event stamped earlier may have come
                # in since the pass read it (the first period finalized must be the first).
                start_us = _billing_starts(conn, [customer], first_catalog)[customer]
    except Exception as err:
        raise _PeriodFailed(None) from err
    created = 0
    t = None if start_us is None else from_us(start_us)
    for _ in range(MAX_PERIODS_PER_CALL):
        if t is None or t >= current.start:
            return created, current.end + grace
        try:
            with unit_of_work(engine) as conn:
                period = period_at(Context(conn, catalog), customer, t)
                if (
                    last_end is not None and period.start < t
                ):  # the billing rule changed: no overlap
                    period = Period(t, period.end)
                period = Period(period.start, min(period.end, current.start))
                if after_last_change:
                    changed_us = _last_change_us(
                        conn, customer, to_us(period.start), to_us(period.end)
                    )
                    if (
                        changed_us is not None and from_us(changed_us) + grace > now
                    ):  # more may follow
                        return created, from_us(changed_us) + grace
                if finalize(Context(conn, catalog), customer, period, now) is not None:
                    created += 1
        except Exception as err:
            raise _PeriodFailed(t) from err
        t = period.end
    return created, None


def _failed(
    state: FinalizerState, customer: str, period_start: datetime | None, err: BaseException
) -> None:
    if customer in state.failing and state.failing[customer] == period_start:
        return  # logged already; it is tried again on every call
    state.failing[customer] = period_start
    where = "" if period_start is None else f" for the period from {period_start.isoformat()}"
    log.error(
        "the invoice of customer %r%s could not be finalized; the other customers are, and it is "
        "tried "
        "again on every pass (logged again if this changes)",
        customer,
        where,
        exc_info=err,
    )


def _billing_starts(
    conn: Connection, names: Sequence[str], first_catalog: int | None
) -> dict[str, int | None]:
    """Per customer, where billing starts: with the period of its first recorded activity (an
    event, a seat or plan change, a grant); without any, with the period it signed up in
    (`POST /v1/customers`), else the first catalog's. A few statements for all of them."""
    found = [
        event_log.earliest_times(conn, names),
        customers.first_changes(conn, names),
        grants.earliest(conn, names),
    ]
    out: dict[str, int | None] = {}
    for customer in names:
        values = [f[customer] for f in found if customer in f]
        if values:
            out[customer] = min(values)
        else:
            signed_up = catalogs_service.created_us(conn, customer)
            out[customer] = signed_up if signed_up is not None else first_catalog
    return out


def _last_change_us(conn: Connection, customer: str, start_us: int, end_us: int) -> int | None:
    """When anything stamped in [start, end) was last recorded for the customer: an event
    received, a seat or plan change or a grant effective there. A period is due a grace
    window after this (and after its end)."""
    found = [
        event_log.last_received(conn, customer, start_us, end_us),
        customers.last_recorded_change(conn, customer, start_us, end_us),
        grants.last_recorded(conn, customer, start_us, end_us),
    ]
    values = [v for v in found if v is not None]
    return max(values) if values else None


# --- what finalization closes ---------------------------------------------------------------


def closed_message(conn: Connection, customer: str, t_us: int, field: str, what: str) -> str:
    row = repository.containing(conn, customer, t_us)
    periods = [] if row is None else [(row.period_start_us, row.period_end_us)]
    return model.closed_reason(
        field, customer, t_us, periods, repository.finalized_through(conn, customer) or 0, what
    )


def refuse_if_finalized(
    conn: Connection, customer: str, effective_us: int, field: str = "effective_at"
) -> None:
    """A change effective inside a finalized period would change a final invoice: 409 naming
    `field`."""
    repository.hold_open(conn, [customer])
    through = repository.finalized_through(conn, customer)
    if through is not None and effective_us < through:
        raise Conflict(
            closed_message(
                conn,
                customer,
                effective_us,
                field,
                "a change effective there can no longer be recorded",
            )
        )


# --- stored invoices ------------------------------------------------------------------------


def _line_json(line: Line, currency: str) -> dict[str, Any]:
    out = line.as_dict(currency)
    out["quantity"] = format(line.quantity, "f")
    return out


def from_row(row: Any, timezone: str) -> Invoice:
    """A stored invoice; `timezone` is the customer's, which dates its number."""
    lines = [
        Line(
            d["kind"],
            d["description"],
            d["plan"],
            d["feature"],
            Decimal(d["quantity"]),
            None if d["unit_price"] is None else Decimal(d["unit_price"]),
            Decimal(d["amount"]),
        )
        for d in orjson.loads(row.lines)
    ]
    total = model.total(lines)
    return Invoice(
        row.id,
        row.customer,
        "finalized",
        Period(from_us(row.period_start_us), from_us(row.period_end_us)),
        row.plan,
        row.currency,
        lines,
        total,
        from_us(row.finalized_us),
        timezone,
    )


def get(ctx: Context, customer: str, invoice_id: int) -> Invoice:
    conn = ctx.conn
    view = customers.view(ctx, customer, 0)  # 404 for an unknown customer
    row = repository.get(conn, customer, invoice_id)
    if row is None:
        raise NotFound(f"invoice: customer {customer!r} has no finalized invoice {invoice_id}")
    return from_row(row, view.spec.timezone)


# The local date of a period's start is within a day of its UTC date: finalized invoices
# starting this close to the date a number names are read, and the one numbered so kept.
_NUMBER_WINDOW = timedelta(days=2)


def by_number(ctx: Context, customer: str, number: str) -> Invoice:
    """The finalized invoice of `customer` numbered `number` (a number of another customer
    is not found)."""
    view = customers.view(ctx, customer, 0)  # 404 for an unknown customer
    day = model.number_date(customer, number)
    if day is not None:
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        rows = repository.starting_between(
            ctx.conn,
            customer,
            to_us(midnight - _NUMBER_WINDOW),
            to_us(midnight + _NUMBER_WINDOW),
        )
        for row in rows:
            invoice = from_row(row, view.spec.timezone)
            if invoice.number == number:
                return invoice
    raise NotFound(f"invoice: customer {customer!r} has no finalized invoice numbered {number!r}")


def listing(
    ctx: Context, customer: str, after_start_us: int | None = None, limit: int | None = None
) -> list[Invoice]:
    """The customer's finalized invoices, oldest first: those whose period starts after
    `after_start_us` (all without it), at most `limit` (all without it)."""
    conn = ctx.conn
    view = customers.view(ctx, customer, 0)  # 404 for an unknown customer
    rows = repository.listing(conn, customer, after_start_us, limit)
    return [from_row(row, view.spec.timezone) for row in rows]


def hold_open(conn: Connection, customers: Sequence[str]) -> None:
    """Keep these customers' invoices from being finalized until the transaction ends."""
    repository.hold_open(conn, customers)


def finalized_through_many(conn: Connection, customers: Sequence[str] | None) -> dict[str, int]:
    """Per customer, the end of its last finalized period (customers with none left out)."""
    return repository.finalized_through_many(conn, customers)


def invoiced_periods(conn: Connection, customer: str) -> list[tuple[int, int]]:
    """The (start, end) of every period the customer has an invoice for."""
    return [(r.period_start_us, r.period_end_us) for r in repository.listing(conn, customer)]


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many invoices each customer has (customers with none left out)."""
    return repository.count_by_customer(conn, customers)
