"""Time alone crosses levels: find when, and be there.

A feature's standing moves without any request while a media stream stays open, when an
event stamped ahead comes due, and when a new period starts already past a level (a gauge
carries its level in; an allowance of zero is reached at once). For each feature, `refresh`
computes the next instant at which that brings the feature to a level not yet fired (a
threshold, the limit, the hard limit). Usage within a period only grows with time, so that
instant is found by bisection over microseconds; a duration meter's usage is read once for
that (a snapshot: `meters.snapshot`) and each instant is then computed in memory. The
scheduler sleeps until the earliest such instant, evaluates there, and records the notice
with that exact instant.

Customers touched by a batch are evaluated only when the batch may have brought them to a
level: each exact evaluation leaves a watch per feature (notifications.watch), which a batch
widens by what it can add at most (`note_batch`); a watch reaching its goal by time alone
brings the feature's wake-up forward to the instant before (`Watch.wakeup_us`), and one whose
spans grow into the next period brings it to the period's end.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine

from quotameter.catalog.model import EntitlementSpec, MeterSpec
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers import state as customer_state
from quotameter.customers.service import CustomerView
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance, balance, period_of
from quotameter.errors import NotFound
from quotameter.meters import service as meters
from quotameter.meters.model import Contribution
from quotameter.notifications import repository as repo
from quotameter.notifications import watch as watching
from quotameter.notifications.service import BLOCKED, evaluate, evaluate_all
from quotameter.notifications.watch import Watch
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us
from quotameter.worker import Worker

log = logging.getLogger("quotameter.scheduler")
SETTLE_CHUNK = 4  # customers evaluated per transaction by `tick`


def _crossing(
    ctx: Context,
    customer: str,
    feature: str,
    now: datetime,
    horizon: int,
    known: Balance | None = None,
    view: CustomerView | None = None,
) -> tuple[int | None, Watch]:
    """The next instant time alone brings the feature to a level not yet fired (or the next
    period's start, to look again then), and the watch that bounds its usage from `now` on.
    `horizon`: the customer's, read before any usage; `known`: the feature's balance at
    `now`, if read already, else `view`: the customer's view at `now`, if read already."""
    conn, catalog = ctx.conn, ctx.catalog
    now_us = to_us(now)
    b = known if known is not None else balance(ctx, customer, feature, now, view=view)
    view, ent = b.view, b.entitlement
    meter = catalog.spec.meters[ent.meter]
    s = b.standing
    start_us, end_us = to_us(b.period.start), to_us(b.period.end)
    if s.limit is None:  # unlimited: no level to reach, in this period or any other
        return None, _watch(meter, ent.meter, end_us, now_us, s.usage, 0, None)
    usage, rate = _usage_from(conn, meter, ent.meter, customer, start_us, end_us, now_us)
    targets = _targets(conn, customer, feature, start_us, s, ent, view)
    goal = min((q for q in targets if q > s.usage), default=None)
    if any(q <= s.usage for q in targets) or (
        meter.aggregation == "gauge" and _blocked(conn, customer, feature, start_us)
    ):
        # A level reached but not fired (nothing evaluated it), or a block a falling level
        # may lift: every batch is evaluated exactly.
        watch = Watch(ent.meter, end_us, now_us, Decimal(0), 0, Decimal(0), watching.unit_us(meter))
    else:
        watch = _watch(meter, ent.meter, end_us, now_us, s.usage, rate, goal)
    last = end_us - 1
    # Nothing open, nothing stamped ahead in this period. At its last instant usage can no
    # longer move within it, whatever is open: the next period is looked at when it starts.
    if now_us < last and usage(last) <= s.usage:
        due = _due_at_start(ctx, customer, feature, b.period.end, horizon)
        return (end_us if due else None), watch
    if goal is None or usage(last) < goal:
        return end_us, watch  # open streams run into the next period: look again when it starts
    lo, hi = now_us, last  # usage(lo) < goal <= usage(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if usage(mid) >= goal:
            hi = mid
        else:
            lo = mid
    return hi, watch


def _watch(
    spec: MeterSpec,
    meter: str,
    end_us: int,
    now_us: int,
    usage: Decimal,
    rate: int,
    goal: Decimal | None,
) -> Watch:
    return Watch(
        meter,
        end_us,
        now_us,
        usage + watching.slack(spec, rate),
        rate,
        goal,
        watching.unit_us(spec),
    )


def _blocked(conn: Connection, customer: str, feature: str, start_us: int) -> bool:
    return BLOCKED in repo.fired_keys(conn, customer, feature, start_us)


def _usage_from(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, now_us: int
) -> tuple[Callable[[int], Decimal], int]:
    """The meter's usage in [lo, hi) at instants from `now_us` on, as time alone moves it,
    and how many spans grow with time (the usage grows by at most that many microseconds
    per microsecond). A duration meter is read once (a snapshot, then every instant costs
    no read); other kinds move only by events stamped ahead, rare enough to read each
    instant asked about."""
    if spec.aggregation == "duration":
        snap = meters.snapshot(conn, spec, meter, customer, lo, hi, now_us)
        return (lambda t: meters.snapshot_usage(spec, snap, t)), snap.growing()
    return (lambda t: meters.usage(conn, spec, meter, customer, lo, hi, t)), 0


def _due_at_start(ctx: Context, customer: str, feature: str, start: datetime, horizon: int) -> bool:
    """Whether the period starting at `start` needs an evaluation when it starts: something of
    the customer is stamped there or later (its `horizon` reaches it: one stamped there since
    the horizon was read moves the change counter, and the customer is evaluated again), or
    its standing starts at a level not yet fired."""
    conn = ctx.conn
    if horizon >= to_us(start):
        return True
    try:
        b = balance(ctx, customer, feature, start)
    except NotFound:  # the plan in force then has no such feature
        return False
    s = b.standing
    targets = _targets(conn, customer, feature, to_us(b.period.start), s, b.entitlement, b.view)
    return any(s.usage >= q for q in targets)


def _targets(
    conn: Connection,
    customer: str,
    feature: str,
    start_us: int,
    s: model.Standing,
    ent: EntitlementSpec,
    view: CustomerView,
) -> list[Decimal]:
    if s.limit is None:
        return []
    done = repo.fired_keys(conn, customer, feature, start_us)
    out = [
        t.percent_used * s.limit / model.HUNDRED
        for t in model.thresholds(ent.notify)
        if t.key not in done
    ]
    if s.hard_limit is not None and BLOCKED not in done:
        out.append(s.hard_limit)
    if view.spec.auto_upgrade and view.plan.next_plan:
        out.append(s.limit)
    return out


def refresh(ctx: Context, customer: str, feature: str, now: datetime) -> int | None:
    """Set the feature's wake-up and rewrite its watch, from an exact evaluation at `now`."""
    conn = ctx.conn
    version, horizon = customer_state.read(conn, customer)
    due = _refresh(ctx, customer, feature, now, version, horizon, whole=False)
    _recheck(conn, customer, version, to_us(now))
    return due


def _refresh(
    ctx: Context,
    customer: str,
    feature: str,
    now: datetime,
    version: int,
    horizon: int,
    *,
    whole: bool,
    known: Balance | None = None,
    view: CustomerView | None = None,
) -> int | None:
    """`refresh`, given the customer's change counter and horizon read before any usage (a
    write since moves the counter, and `_recheck` then has the customer evaluated again). A
    customer with anything stamped after `now` keeps no watch: what is stamped ahead grows
    usage at no rate, so each batch of theirs is evaluated exactly. Unless the customer's
    watches are being written `whole`, only an existing watch is rewritten: one feature's
    watch alone would make the customer's other meters look unwatched."""
    conn = ctx.conn
    due, watch = _crossing(ctx, customer, feature, now, horizon, known, view)
    repo.set_wakeup(conn, customer, feature, due)
    if horizon > to_us(now):
        repo.drop_watches(conn, customer)
    else:
        repo.put_watch(conn, customer, feature, replace(watch, version=version), insert=whole)
    return due


def _recheck(conn: Connection, customer: str, version: int, now_us: int) -> None:
    """A write of the customer committed since `version` was read (PostgreSQL: another
    process) may be missing from the watches and wake-ups just written, or have widened the
    ones they replaced: evaluate the customer again."""
    if customer_state.read(conn, customer)[0] != version:
        repo.mark_pending(conn, [customer], now_us)


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What an exact evaluation of a customer at one instant read: the customer's change
    counter and horizon, read before anything else, and the balances it read after them."""

    version: int
    horizon: int
    balances: dict[str, Balance]


def refresh_meters(
    ctx: Context,
    customer: str,
    meter_names: set[str],
    now: datetime,
    evaluated: Evaluated | None = None,
) -> None:
    """Refresh every limited feature of the customer's plan: its watches are then whole (a
    meter without a watch is on no feature of the customer). An unlimited feature has a
    watch too, with no goal and no usage read: without one, a customer whose features are all
    unlimited would have no watch and every batch of theirs would be evaluated exactly.

    `evaluated`: an evaluation at `now` that recorded nothing, whose balances are taken as
    they are (the watches then carry the counter read before them)."""
    conn = ctx.conn
    if evaluated is None:
        version, horizon = customer_state.read(conn, customer)
        known: dict[str, Balance] = {}
    else:
        version, horizon, known = evaluated.version, evaluated.horizon, evaluated.balances
    # The balances of an evaluation at `now` that recorded nothing carry the view they read.
    view = next(iter(known.values())).view if known else customers.view(ctx, customer, to_us(now))
    repo.drop_watches(conn, customer)
    for feature, ent in view.plan.entitlements.items():
        if ent.meter not in meter_names:
            continue
        if ent.allowance is None:
            _unlimited(ctx, customer, feature, ent, view, now, version, horizon)
        else:
            _refresh(
                ctx,
                customer,
                feature,
                now,
                version,
                horizon,
                whole=True,
                known=known.get(feature),
                view=view,
            )
    _recheck(conn, customer, version, to_us(now))


def _unlimited(
    ctx: Context,
    customer: str,
    feature: str,
    ent: EntitlementSpec,
    view: CustomerView,
    now: datetime,
    version: int,
    horizon: int,
) -> None:
    """An unlimited feature's watch: no level to reach, in this period or any other (a new
    period still brings an exact evaluation, as for every watch)."""
    conn = ctx.conn
    repo.set_wakeup(conn, customer, feature, None)
    if horizon > to_us(now):
        repo.drop_watches(conn, customer)
        return
    spec = ctx.catalog.spec.meters[ent.meter]
    end_us = to_us(period_of(view, ent, now).end)
    watch = Watch(
        ent.meter, end_us, to_us(now), Decimal(0), 0, None, watching.unit_us(spec), version
    )
    repo.put_watch(conn, customer, feature, watch, insert=True)


def note_batch(
    ctx: Context,
    grouped: Mapping[tuple[str, str], Sequence[Contribution]],
    touched: Sequence[str],
    received_us: int,
) -> None:
    """After a batch is stored (its customers' change counters bumped): mark for exact
    evaluation the customers it may have brought to a level, or whose growth it cannot bound,
    and widen the watches of the others, bringing their wake-ups forward to when time alone
    calls for a look (`Watch.wakeup_us`). Two reads and up to three writes for the batch.

    A watch is widened only if it accounts for every change of the customer before this batch
    (`watch.follows`): writes serialize on the customer's change counter row, and a watch
    carries the counter read before the usage it was computed from."""
    conn, catalog = ctx.conn, ctx.catalog
    names = sorted(set(touched))
    held, counters = repo.read_watches(conn, names)
    by_customer: dict[str, list[tuple[str, Sequence[Contribution]]]] = defaultdict(list)
    for (meter, customer), items in grouped.items():
        by_customer[customer].append((meter, items))
    pending: list[str] = []
    widened: list[tuple[str, str, Watch, int]] = []
    for customer in names:
        version = counters.get(customer, 0)
        new = _widened(
            catalog, held.get(customer, {}), by_customer.get(customer, []), received_us, version
        )
        if new is None:
            pending.append(customer)
        else:
            widened += [(customer, feature, w, version) for feature, w in new.items()]
    repo.mark_pending(conn, pending, received_us)
    repo.widen_watches(conn, widened)
    repo.advance_wakeups(
        conn, [(c, f, due) for c, f, w, _ in widened if (due := w.wakeup_us()) is not None]
    )


def _widened(
    catalog: LoadedCatalog,
    watches: dict[str, Watch],
    contributions: list[tuple[str, Sequence[Contribution]]],
    received_us: int,
    version: int,
) -> dict[str, Watch] | None:
    """Every watch of the customer, widened by the batch (each to be stored with the change
    counter `version`); None if the customer must be evaluated exactly."""
    if not watching.follows(list(watches.values()), version):
        return None
    out = dict(watches)
    for meter, items in contributions:
        for feature, w in watches.items():
            if w.meter != meter:
                continue
            new = watching.widen(catalog.spec.meters[meter], out[feature], items, received_us)
            if new is None:
                return None
            out[feature] = new
    # Any feature, touched by the batch or not: an evaluation now would see what time alone
    # brought it to (a stream's growth that its idle timeout may later take back included),
    # or a new period (which may start past a level).
    if any(
        w.reached_by(max(received_us, w.evaluated_us)) or received_us >= w.period_end_us
        for w in out.values()
    ):
        return None
    return out


def settle(
    ctx: Context,
    customer: str | None,
    clock: Callable[[], datetime],
    limit: int = 200,
) -> int:
    """Evaluate the customers whose usage changed since their last evaluation (one, or any).

    The instant is read from `clock` after the pending marks are claimed: a mark claimed here
    was committed with its events, so their instants are behind that reading. An instant
    taken before waiting for the claim could precede the last event of another process,
    and its notices (the block, say) would then never be recorded."""
    conn, catalog = ctx.conn, ctx.catalog
    names = repo.take_pending(conn, customer, limit)
    if not names:
        return 0
    now = clock()
    for name in names:
        if name in catalog.spec.customers:
            # The counter first: a batch committed while the balances are read (PostgreSQL)
            # moves it past the watches' version, and the customer is evaluated again.
            version, horizon = customer_state.read(conn, name)
            balances: dict[str, Balance] = {}
            if evaluate_all(ctx, name, now, to_us(now), balances=balances):
                refresh_meters(ctx, name, set(catalog.spec.meters), now)  # the plan may differ
            else:
                evaluated = Evaluated(version, horizon, balances)
                refresh_meters(ctx, name, set(catalog.spec.meters), now, evaluated)
    return len(names)


def settle_before_read(
    engine: Engine, catalogs: CatalogCache, customer: str, clock: Callable[[], datetime]
) -> None:
    """Reads of balances and notices first settle the customer's pending evaluation, so they
    always reflect every committed event (an auto-upgrade included). Costs one lookup when
    nothing is pending."""
    with engine.connect() as conn:
        if not repo.is_pending(conn, customer):
            return
    with unit_of_work(engine) as conn:
        settle(Context(conn, catalogs.current(conn)), customer, clock)


def tick(
    engine: Engine, catalogs: CatalogCache, clock: Callable[[], datetime], limit: int = 1000
) -> int:
    """Settle the pending customers, then evaluate every wake-up due by now, each at its own
    instant, in time order (one crossing may schedule the next, also due already); how many ran."""
    ran = 0
    while True:
        # A few customers per transaction: the write lock (SQLite) is never held for long.
        with unit_of_work(engine) as conn:
            settled = settle(Context(conn, catalogs.current(conn)), None, clock, limit=SETTLE_CHUNK)
        if not settled:
            break
        ran += settled
    now = clock()
    while ran < limit:
        with unit_of_work(engine) as conn:
            catalog = catalogs.current(conn)
            ctx = Context(conn, catalog)
            due = repo.due_wakeups(conn, to_us(now), limit=1)
            if not due:
                return ran
            w = due[0]
            at = from_us(w.due_us)
            if not _still_has(ctx, w.customer, w.feature, w.due_us):
                repo.set_wakeup(conn, w.customer, w.feature, None)
            elif (
                not w.exact
            ):  # a bound's instant: nothing reached at or before it; find the exact crossing
                refresh(ctx, w.customer, w.feature, at)
            elif evaluate(ctx, w.customer, w.feature, at, to_us(now)):
                # What it recorded may be an auto-upgrade: the plan, and every feature's watch
                # with it, may have changed.
                refresh_meters(ctx, w.customer, set(catalog.spec.meters), at)
            else:
                refresh(ctx, w.customer, w.feature, at)
            ran += 1
    return ran


def _still_has(ctx: Context, customer: str, feature: str, at_us: int) -> bool:
    """Whether a wake-up still concerns a feature of the customer: a plan change (or a new
    catalog) since it was set may have taken the feature away, and a wake-up left due would
    stop every pass at it, holding back all the wake-ups due after it."""
    catalog = ctx.catalog
    if customer not in catalog.spec.customers:
        return False
    return feature in customers.view(ctx, customer, at_us).plan.entitlements


class Scheduler(Worker):
    """The loop inside `serve`: sleeps until the next wake-up (checking at least every
    `poll` seconds for wake-ups set by other processes)."""

    def __init__(
        self,
        engine: Engine,
        catalogs: CatalogCache,
        clock: Callable[[], datetime],
        wake: threading.Event,
        poll: float = 2.0,
        coalesce: float = 0.1,
        backoff_max: float = 60.0,
    ) -> None:
        # `wake` is set after each committed batch: evaluate without waiting for the poll.
        # After a pass, batches gather for `coalesce` seconds: one evaluation per customer then
        # covers all of them (a busy ingest would otherwise evaluate after every batch).
        super().__init__(
            "scheduler",
            poll,
            backoff_max=backoff_max,
            coalesce=coalesce,
            wake_event=wake,
            logger=log,
        )
        self.engine, self.catalogs, self.clock = engine, catalogs, clock

    def step(self) -> float | None:
        """A tick; the seconds until the next wake-up (none set: wait for the poll)."""
        tick(self.engine, self.catalogs, self.clock)
        with self.engine.connect() as conn:
            due = repo.next_wakeup(conn)
        return None if due is None else (due - to_us(self.clock())) / 1e6
