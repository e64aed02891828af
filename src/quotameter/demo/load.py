"""`quotameter demo`: the four reference policies and a month of usage, put through the
services the API uses.

The story is `quotameter.demo.scenario`; `quotameter.demo.month` makes the month of it
(events, operations, the evenings). `load_demo` applies the demo catalog, sends the events
through ingest, in batches per source; then, in time order, each seat change and grant at
its instant and a notice evaluation at the end of each organization's day, so every notice,
and the auto-upgrade, carries the day it happened rather than the moment of the load (a
read at an instant counts only the events stamped up to it). A last `scheduler.tick` at
`now` evaluates the rest and schedules the crossings that the open streams will make.
Nothing is stamped after `now`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from quotameter.catalog.model import validate_catalog
from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.demo.month import (
    CustomerChange,
    DemoMonth,
    Operation,
    demo_catalog,
    plan_month,
    story_clock,
)
from quotameter.demo.scenario import SHOWN, STORY_DAYS
from quotameter.entitlements.service import Balance, balance
from quotameter.grants import service as grants
from quotameter.notifications import scheduler
from quotameter.notifications import service as notifications
from quotameter.notifications.service import evaluate_all
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us
from quotameter.usecases import catalog as use_catalog
from quotameter.usecases import grants as use_grants
from quotameter.usecases.record import ingest

__all__ = [
    "SHOWN",
    "STORY_DAYS",
    "DemoMonth",
    "DemoSummary",
    "OrgState",
    "demo_catalog",
    "describe",
    "load_demo",
    "plan_month",
    "story_clock",
]

BATCH = 5000  # events per ingest transaction, like a client posting batches


# --- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgState:
    customer: str
    plan: str
    feature: str
    state: str  # for people: "near its limit: 90.5 % of 5,250 minutes used"
    usage: Decimal
    limit: Decimal | None
    unit: str


@dataclass(frozen=True)
class DemoSummary:
    now: datetime
    organizations: list[OrgState]
    events: int  # events loaded (sent to ingest)
    notices: int  # notices recorded
    catalog_version: int

    def table(self) -> list[tuple[str, str, str, str]]:
        """(customer, plan, feature, state) per organization, for printing."""
        return [(o.customer, o.plan, o.feature, o.state) for o in self.organizations]


def load_demo(engine: Engine, now: datetime, seed: int = 7) -> DemoSummary:
    """Apply the demo catalog and load a month of usage up to `now` into a migrated, empty
    database (loading again with the same seed and now adds nothing)."""
    if now.tzinfo is None:
        raise ValueError("now: must be an aware datetime")
    now = now.astimezone(UTC)
    now_us = to_us(now)
    doc = demo_catalog()
    spec = validate_catalog(doc)
    month = plan_month(spec, now, seed)
    catalogs = CatalogCache()
    with unit_of_work(engine) as conn:
        current = catalogs.current(conn)
        version = current.version
        if current.spec != spec:
            version = use_catalog.apply(conn, doc, current, month.start_us).version

    by_source: dict[str, list[dict[str, Any]]] = {}
    for ev in month.events:
        by_source.setdefault(ev["source"], []).append(ev)
    # Each producer posts its own batches.
    accepted = sum(_ingest(engine, catalogs, events, now_us) for events in by_source.values())

    if accepted:  # else this month was loaded before: its evaluations would only repeat its notices
        for at_us, operation, names in _timeline(month):
            if operation is not None:
                _apply(engine, catalogs, operation)
                continue
            with unit_of_work(engine) as conn:
                catalog = catalogs.current(conn)
                for customer in names:
                    evaluate_all(Context(conn, catalog), customer, from_us(at_us), at_us)
    # Evaluates what the last evenings left (every customer is pending since the ingest)
    # and schedules the crossings that the streams still open at `now` will make.
    scheduler.tick(engine, catalogs, lambda: now)

    with engine.connect() as conn:
        catalog = catalogs.current(conn)
        rows = [
            _state(Context(conn, catalog), customer, feature, now) for customer, feature in SHOWN
        ]
        recorded = sum(
            len(notifications.listing(conn, customer, limit=100_000)) for customer, _ in SHOWN
        )
    return DemoSummary(now, rows, len(month.events), recorded, version)


def _timeline(month: DemoMonth) -> Iterator[tuple[int, Operation | None, list[str]]]:
    """The operations and the evenings' evaluations (customers evaluated together), in time
    order."""
    evenings: dict[int, list[str]] = {}
    for at_us, customer in month.checks:
        evenings.setdefault(at_us, []).append(customer)
    moments: list[tuple[int, int, Operation | None, list[str]]] = [
        (op.at_us, 0, op, []) for op in month.operations
    ]
    moments += [(at_us, 1, None, names) for at_us, names in evenings.items()]
    for at_us, _, operation, names in sorted(moments, key=lambda m: (m[0], m[1])):
        yield at_us, operation, names


def _ingest(
    engine: Engine, catalogs: CatalogCache, events: list[dict[str, Any]], received_us: int
) -> int:
    """Post `events` in batches; how many were new."""
    accepted = 0
    for k in range(0, len(events), BATCH):
        with unit_of_work(engine) as conn:
            result = ingest(
                Context(conn, catalogs.current(conn)), events[k : k + BATCH], received_us
            )
        if result.rejected:  # the generator's mistake, never the data's
            raise RuntimeError(f"demo events rejected: {result.rejected[:3]}")
        accepted += result.accepted
    return accepted


def _apply(engine: Engine, catalogs: CatalogCache, op: Operation) -> None:
    """A change made by an operator at its instant, followed by what the API does after it:
    evaluate the customer there (a raised limit re-arms its notices). Its wake-ups are
    scheduled by the last tick, from `now`: from a past instant they would see the events
    that came after it."""
    at = from_us(op.at_us)
    with unit_of_work(engine) as conn:
        catalog = catalogs.current(conn)
        ctx = Context(conn, catalog)
        if isinstance(op, CustomerChange):
            customers.change(
                ctx,
                op.customer,
                seats=op.seats,
                settings={"members": list(op.members)} if op.members else {},
                effective_us=op.at_us,
                recorded_us=op.at_us,
            )
        else:
            req = grants.GrantRequest(
                op.customer, op.grant_id, op.feature, op.kind, amount=op.amount, blocks=op.blocks
            )
            _grant, created = use_grants.add(ctx, req, at, op.at_us)
            if not created:
                return  # loaded before
        evaluate_all(ctx, op.customer, at, op.at_us)


# --- the summary --------------------------------------------------------------------------


def _state(ctx: Context, customer: str, feature: str, now: datetime) -> OrgState:
    conn, catalog = ctx.conn, ctx.catalog
    b = balance(ctx, customer, feature, now)
    upgrades = [h for h in customers.plan_history(conn, customer) if h.reason == "auto_upgrade"]
    extras = [
        g
        for g in grants.listing(conn, customer)
        if g.feature == feature and to_us(b.period.start) <= g.effective_us <= to_us(now)
    ]
    state = describe(
        b,
        upgraded_at=from_us(upgrades[-1].effective_us) if upgrades else None,
        was=catalog.spec.customers[customer].plan,
        topups=sum(g.blocks or 0 for g in extras if g.kind == "topup"),
        credits=sum((Decimal(g.amount) for g in extras if g.kind == "credit"), Decimal(0)),
    )
    return OrgState(customer, b.plan, feature, state, b.usage, b.standing.limit, b.unit)


def describe(
    b: Balance,
    *,
    upgraded_at: datetime | None = None,
    was: str = "",
    topups: int = 0,
    credits: Decimal = Decimal(0),
) -> str:
    """A feature's standing in a few words, from the balance alone (plus how it got there)."""
    s = b.standing
    unit = b.unit
    if s.limit is None:
        return f"no limit: {_num(s.usage)} {_units(unit, s.usage)} used this period"
    used = f"{_pct(s.usage, s.limit)} of {_num(s.limit)} {_units(unit, s.limit)} used"
    if not s.has_access:
        text = f"blocked: {used}; members told in-app"
    elif s.level is not None and s.overage > 0:
        text = (
            f"in overage: peaked at {_num(s.usage)} of {_num(s.limit)} {_units(unit, s.limit)} "
            f"({_num(s.overage)} billed as overage); level now {_num(s.level)}"
        )
    elif s.overage > 0:
        text = f"past its limit: {used}, within the slack"
    elif s.usage * 100 >= _near(b) * s.limit:
        text = f"near its limit: {used}"
    else:
        text = f"comfortably under: {used}"
    if upgraded_at is not None:
        local = upgraded_at.astimezone(ZoneInfo(b.view.spec.timezone))
        text = f"auto-upgraded from {was} on {local:%d %b}; {text}"
    if topups:
        text += f"; bought {topups} top-up block{'s' if topups > 1 else ''}"
    if credits:
        text += f"; {_num(credits)}-{unit} credit"
    return text


def _near(b: Balance) -> Decimal:
    notify = b.entitlement.notify
    levels = [Decimal(p) for p in notify.percent_used] if notify else []
    levels += [100 - Decimal(r) for r in notify.percent_remaining] if notify else []
    return min(levels, default=Decimal(80))


def _pct(part: Decimal, whole: Decimal) -> str:
    if whole == 0:
        return "100 %"
    return f"{_num((part * 100 / whole).quantize(Decimal('0.1'), rounding=ROUND_DOWN))} %"


def _num(value: Decimal) -> str:
    value = value.normalize()
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value:,f}"


def _units(unit: str, value: Decimal) -> str:
    return unit if value == 1 else f"{unit}s"
