"""What a candidate catalog would have done: every customer's recorded events replayed under
it, next to what the catalog in force does, without applying anything.

The candidate is applied inside a transaction that is rolled back (on SQLite, inside a
private copy of the database): meters it redefines are rebuilt from the raw events by the
same code that applies a catalog, and the invoices and balances are computed by the same
code that answers the API. So a simulation is exact, and it stores nothing.

For each customer it answers, old against new: each feature's usage and overage at the end
of the range, the first instant the feature would have been refused ("blocked"), and the
invoices of the billing periods the range touches, each priced up to the range's end.
Recorded plan and seat changes, grants and top-ups stay as they happened; auto-upgrades are
not replayed under the candidate.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine

from quotameter.catalog.model import validate_catalog
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements.service import balance
from quotameter.errors import Invalid
from quotameter.grants import service as grants
from quotameter.invoices import service as invoices
from quotameter.money import amount_text
from quotameter.periods import Period
from quotameter.store.engine import make_engine
from quotameter.timeutil import from_us, rfc3339, to_us
from quotameter.usecases import catalog as use_catalog

ONE_US = timedelta(microseconds=1)
RESOLUTION = timedelta(seconds=1)  # how finely the first blocked instant is searched


@dataclass(frozen=True)
class FeatureOutcome:
    usage: Decimal
    unit: str
    overage: Decimal
    blocked_at: datetime | None  # the first instant the feature would have been refused


@dataclass(frozen=True)
class Outcome:
    """One customer under one catalog, over the range."""

    plan: str
    currency: str
    total: Decimal  # the invoices of the periods the range touches
    features: dict[str, FeatureOutcome]


@dataclass(frozen=True)
class CustomerResult:
    customer: str
    old: Outcome | None  # None: not a customer of that catalog
    new: Outcome | None

    @property
    def change(self) -> Decimal:
        return (self.new.total if self.new else Decimal(0)) - (
            self.old.total if self.old else Decimal(0)
        )

    @property
    def currency(self) -> str:
        either = self.new or self.old
        return either.currency if either else "USD"

    def features(self) -> list[tuple[str, FeatureOutcome | None, FeatureOutcome | None]]:
        """(feature, old, new) for every feature of either plan."""
        old = self.old.features if self.old else {}
        new = self.new.features if self.new else {}
        return [(f, old.get(f), new.get(f)) for f in sorted(set(old) | set(new))]


@dataclass
class Simulation:
    start: datetime | None  # None: each customer's current period
    end: datetime
    customers: list[CustomerResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return _as_dict(self)

    def to_csv(self) -> str:
        return _to_csv(self)

    def totals(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Per currency: (old, new) revenue over the range."""
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for result in self.customers:
            for side, outcome in enumerate((result.old, result.new)):
                if outcome is None:
                    continue
                pair = list(out.get(outcome.currency, (Decimal(0), Decimal(0))))
                pair[side] += outcome.total
                out[outcome.currency] = (pair[0], pair[1])
        return out


CSV_COLUMNS = (
    "customer",
    "feature",
    "plan_old",
    "plan_new",
    "usage_old",
    "usage_new",
    "overage_old",
    "overage_new",
    "blocked_old",
    "blocked_new",
    "invoices_old",
    "invoices_new",
    "change",
    "currency",
)


def _side(outcome: Outcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    return {
        "plan": outcome.plan,
        "currency": outcome.currency,
        "invoices": amount_text(outcome.total, outcome.currency),
        "features": {
            name: {
                "usage": f.usage,
                "unit": f.unit,
                "overage": f.overage,
                "blocked_at": f.blocked_at,
            }
            for name, f in outcome.features.items()
        },
    }


def _as_dict(sim: Simulation) -> dict[str, object]:
    return {
        "from": sim.start,
        "to": sim.end,
        "customers": [
            {
                "customer": r.customer,
                "old": _side(r.old),
                "new": _side(r.new),
                "change": amount_text(r.change, r.currency),
            }
            for r in sim.customers
        ],
        "revenue": {
            currency: {
                "old": amount_text(a, currency),
                "new": amount_text(b, currency),
                "change": amount_text(b - a, currency),
            }
            for currency, (a, b) in sorted(sim.totals().items())
        },
    }


def _to_csv(sim: Simulation) -> str:
    """One row per customer with its invoices (feature empty), then one per feature with
    its usage: summing the invoice columns counts each customer once."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sim.customers:
        old, new = r.old, r.new
        plans = (old.plan if old else "", new.plan if new else "")
        writer.writerow(
            [
                r.customer,
                "",
                *plans,
                *[""] * 6,
                amount_text(old.total, old.currency) if old else "",
                amount_text(new.total, new.currency) if new else "",
                amount_text(r.change, r.currency),
                r.currency,
            ]
        )
        for feature, a, b in r.features():
            writer.writerow(
                [
                    r.customer,
                    feature,
                    *plans,
                    a.usage if a else "",
                    b.usage if b else "",
                    a.overage if a else "",
                    b.overage if b else "",
                    rfc3339(a.blocked_at) if a and a.blocked_at else "",
                    rfc3339(b.blocked_at) if b and b.blocked_at else "",
                    "",
                    "",
                    "",
                    r.currency,
                ]
            )
    return out.getvalue()


Progress = Callable[[int, int], None]  # (done, of)


def simulate(
    engine: Engine,
    candidate: object,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> Simulation:
    """Run `candidate` (a catalog document) against the recorded data, over [start, end]
    (default: each customer's current billing period up to `now`)."""
    end = end or now
    if start is not None and start >= end:
        raise Invalid("from: must be before to")
    spec = validate_catalog(candidate)  # every error at once, before any work
    result = Simulation(start, end)
    with _scratch(engine) as conn, conn.begin() as trans:
        old = _current(conn)
        names = sorted(set(old.spec.customers) | set(spec.customers))
        steps, done = 2 * len(names), 0
        outcomes: dict[str, list[Outcome | None]] = {name: [None, None] for name in names}
        for side, catalog in enumerate((old, None)):
            if catalog is None:  # the candidate, applied where nobody else sees it
                applied = use_catalog.apply(conn, candidate, old, to_us(now), prune=True)
                catalog = LoadedCatalog(applied.version, spec)
            ctx = Context(conn, catalog)
            for name in names:
                if name in catalog.spec.customers:
                    outcomes[name][side] = outcome(ctx, name, start, end)
                done += 1
                if progress is not None:
                    progress(done, steps)
        trans.rollback()
    result.customers = [CustomerResult(n, *outcomes[n]) for n in names]
    return result


def _current(conn: Connection) -> LoadedCatalog:
    return CatalogCache().current(conn)


def outcome(ctx: Context, customer: str, start: datetime | None, end: datetime) -> Outcome:
    view = customers.view(ctx, customer, to_us(end))
    total = Decimal(0)
    currency = view.plan.currency
    for period in _periods(ctx, customer, start, end):
        invoice = invoices.compute(ctx, customer, period, min(end, period.end - ONE_US))
        total += invoice.total
        currency = invoice.currency
    first = start or invoices.period_at(ctx, customer, end).start
    features: dict[str, FeatureOutcome] = {}
    for feature in sorted(view.plan.entitlements):
        b = balance(ctx, customer, feature, end)
        features[feature] = FeatureOutcome(
            b.usage,
            b.unit,
            b.standing.overage,
            _first_blocked(ctx, customer, feature, first, end),
        )
    return Outcome(view.plan_name, currency, total, features)


def _periods(ctx: Context, customer: str, start: datetime | None, end: datetime) -> list[Period]:
    """The billing periods [start, end] touches, oldest first."""
    found = [invoices.period_at(ctx, customer, end)]
    while start is not None and found[0].start > start:
        found.insert(0, invoices.period_at(ctx, customer, found[0].start - ONE_US))
    return found


def _first_blocked(
    ctx: Context, customer: str, feature: str, start: datetime, end: datetime
) -> datetime | None:
    """The first instant in [start, end] the feature would have been refused. Within a period
    usage only grows, so once refused a feature stays refused until a grant or the period's
    end: each stretch between those is searched by bisection, to the second."""

    def refused(at: datetime) -> bool:
        try:
            return not balance(ctx, customer, feature, at).standing.has_access
        except KeyError:  # not a feature of the plan in force then
            return False

    cuts = {end}
    t = start
    while True:  # period ends
        period_end = invoices.period_at(ctx, customer, t).end
        if period_end > end:
            break
        cuts.add(period_end - ONE_US)
        t = period_end
    for row in grants.listing(ctx.conn, customer):  # just before each grant took effect
        at = from_us(row.effective_us) - ONE_US
        if start <= at <= end:
            cuts.add(at)
    lo = start
    for cut in sorted(cuts):
        if refused(cut):
            return _bisect(refused, lo, cut)
        lo = cut + ONE_US
    return None


def _bisect(refused: Callable[[datetime], bool], lo: datetime, hi: datetime) -> datetime:
    """The first refused instant in [lo, hi], `hi` being refused: to the second, rounded up
    (never past `hi`)."""
    if refused(lo):
        return lo
    while hi - lo > RESOLUTION:
        mid = lo + (hi - lo) / 2
        if refused(mid):
            hi = mid
        else:
            lo = mid
    whole = hi.replace(microsecond=0)
    return whole if whole >= lo and (whole == hi or refused(whole)) else hi


@contextmanager
def _scratch(engine: Engine) -> Iterator[Connection]:
    """A connection whose writes nobody else sees: PostgreSQL's own (its transaction is
    rolled back); for SQLite, a private copy of the database (SQLite's online backup), so the
    live database's write lock is never held while the simulation runs."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            yield conn
        return
    source = engine.url.database
    if not source or source == ":memory:":
        raise Invalid("database: an in-memory SQLite database cannot be simulated on")
    with tempfile.TemporaryDirectory(prefix="quotameter-simulate-") as folder:
        copy = Path(folder) / "copy.sqlite3"
        live, target = sqlite3.connect(source), sqlite3.connect(copy)
        try:
            live.backup(target)
        finally:
            live.close()
            target.close()
        scratch = make_engine(f"sqlite:///{copy}")
        try:
            with scratch.connect() as conn:
                yield conn
        finally:
            scratch.dispose()
