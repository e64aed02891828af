"""What an admin's action would do, before it is done: the console's review pages.

A plan or seat change is priced by making it, through the same use case that makes it for
real, inside a write transaction that is then rolled back: the running invoice of this
period is computed before and after the change in that transaction, and their difference is
what the change costs this period. Nothing of it is kept (no row, no notice, no wake-up: a
rolled-back transaction tells no one), and the balance cache is not used inside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements.service import balance, period_of
from quotameter.invoices import service as invoices
from quotameter.invoices.model import Line
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import customers as use_customers


@dataclass(frozen=True, slots=True)
class TopupOffer:
    feature: str
    unit: str
    block_size: Decimal
    price: Decimal  # of one block, in the plan's currency
    period_end: datetime  # when a block bought now expires


@dataclass(frozen=True, slots=True)
class Limited:
    """A feature with an allowance: one that a credit can add to."""

    feature: str
    unit: str
    period_end: datetime  # when a credit granted now expires (without rollover)


@dataclass(frozen=True, slots=True)
class Offer:
    """What an admin may do to a customer now, and with what."""

    customer: str
    plan: str
    currency: str
    timezone: str
    seats: int
    plans: list[str]
    topups: list[TopupOffer]
    limited: list[Limited]

    def topup(self, feature: str) -> TopupOffer | None:
        return next((t for t in self.topups if t.feature == feature), None)

    def credit(self, feature: str) -> Limited | None:
        return next((f for f in self.limited if f.feature == feature), None)


@dataclass(frozen=True, slots=True)
class Allowance:
    """A feature whose included amount the change moves (or that it adds or takes away)."""

    feature: str
    unit: str
    before: Decimal | None  # None: unlimited
    after: Decimal | None
    had: bool = True  # on the plan before the change
    has: bool = True  # on the plan after it


@dataclass(frozen=True, slots=True)
class Difference:
    """This period's running invoice without and with the change."""

    currency: str
    before_total: Decimal
    after_total: Decimal
    removed: list[Line]  # lines the change takes off the invoice (or changes: old version)
    added: list[Line]  # lines it puts on (or changes: new version)
    allowances: list[Allowance]

    @property
    def delta(self) -> Decimal:
        return self.after_total - self.before_total


def offer(ctx: Context, customer: str, now: datetime) -> Offer:
    """The customer's plan, seats, the top-ups its plan sells and its limited features."""
    view = customers.view(ctx, customer, to_us(now))
    meters = ctx.catalog.spec.meters
    topups, limited = [], []
    for feature, ent in sorted(view.plan.entitlements.items()):
        unit = meters[ent.meter].unit
        if ent.allowance is None:
            continue
        end = period_of(view, ent, now).end
        limited.append(Limited(feature, unit, end))
        if ent.topup is not None:
            topups.append(TopupOffer(feature, unit, ent.topup.block_size, ent.topup.price, end))
    return Offer(
        customer,
        view.plan_name,
        view.plan.currency,
        view.spec.timezone,
        customers.seats_at(ctx, customer, to_us(now)),
        sorted(ctx.catalog.spec.plans),
        topups,
        limited,
    )


def plan_change(
    engine: Engine, catalogs: CatalogCache, customer: str, plan: str, now: datetime
) -> Difference:
    """What moving to `plan` now changes on this period's invoice and allowances."""

    def change(ctx: Context) -> None:
        use_customers.change_plan(ctx, customer, plan, now, now)

    return _priced(engine, catalogs, customer, now, change)


def seats_change(
    engine: Engine, catalogs: CatalogCache, customer: str, seats: int, now: datetime
) -> Difference:
    """What paying for `seats` seats from now changes on this period's invoice and
    allowances."""

    def change(ctx: Context) -> None:
        use_customers.change(ctx, customer, seats=seats, settings={}, effective=now, now=now)

    return _priced(engine, catalogs, customer, now, change)


def _priced(
    engine: Engine,
    catalogs: CatalogCache,
    customer: str,
    now: datetime,
    change: Callable[[Context], None],
) -> Difference:
    with _rolled_back(engine) as conn:
        ctx = Context(conn, catalogs.current(conn))
        before = invoices.upcoming(ctx, customer, now)
        included_before = _included(ctx, customer, now)
        change(ctx)
        after = invoices.upcoming(ctx, customer, now)
        included_after = _included(ctx, customer, now)
    gone = Counter(before.lines) - Counter(after.lines)
    new = Counter(after.lines) - Counter(before.lines)
    allowances = [
        Allowance(feature, unit, None, amount, had=False)
        if feature not in included_before
        else Allowance(feature, unit, included_before[feature][1], amount)
        for feature, (unit, amount) in included_after.items()
        if feature not in included_before or included_before[feature][1] != amount
    ] + [
        Allowance(feature, unit, amount, None, has=False)
        for feature, (unit, amount) in included_before.items()
        if feature not in included_after
    ]
    return Difference(
        after.currency,
        before.total,
        after.total,
        [line for line in before.lines if _take(gone, line)],
        [line for line in after.lines if _take(new, line)],
        allowances,
    )


def _take(counts: Counter[Line], line: Line) -> bool:
    if counts[line] > 0:
        counts[line] -= 1
        return True
    return False


def _included(ctx: Context, customer: str, now: datetime) -> dict[str, tuple[str, Decimal | None]]:
    """Per feature of the plan in force: its unit and the amount its plan includes now."""
    view = customers.view(ctx, customer, to_us(now))
    out: dict[str, tuple[str, Decimal | None]] = {}
    for feature in sorted(view.plan.entitlements):
        b = balance(ctx, customer, feature, now)
        out[feature] = (b.unit, b.standing.included)
    return out


@contextmanager
def _rolled_back(engine: Engine) -> Iterator[Connection]:
    """A write transaction (it takes the write lock like any) that is never committed."""
    with unit_of_work(engine) as conn:
        transaction = conn.get_transaction()
        try:
            yield conn
        finally:
            if transaction is not None and transaction.is_active:
                transaction.rollback()
