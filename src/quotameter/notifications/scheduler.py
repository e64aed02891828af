"""Time alone crosses levels: find when, and be there.

A feature's standing moves without any request while a media stream stays open, when an
event stamped ahead comes due, and when a new period starts already past a level (a gauge
carries its level in; an allowance of zero is reached at once). For each feature, `refresh`
computes the next instant at which that brings the feature to a level not yet fired (a
threshold, the limit, the hard limit). Usage within a period only grows with time, so that
instant is found by bisection over microseconds; a duration meter's usage is read once for
that (a snapshot: `meters.snapshot`) and each instant is then computed in memory. The scheduler sleeps until the earliest such
instant, evaluates there, and records the notice with that exact instant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine

from quotameter.catalog.model import MeterSpec
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.customers import service as customers
from quotameter.customers import state as customer_state
from quotameter.entitlements import model
from quotameter.entitlements.service import balance
from quotameter.errors import NotFound
from quotameter.meters import service as meters
from quotameter.notifications import repository as repo
from quotameter.notifications.service import BLOCKED, evaluate, evaluate_all
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us

log = logging.getLogger("quotameter.scheduler")


def next_crossing(conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, now: datetime) -> int | None:
    now_us = to_us(now)
    b = balance(conn, catalog, customer, feature, now)
    view, ent = b.view, b.entitlement
    meter = catalog.spec.meters[ent.meter]
    s = b.standing
    if s.limit is None:
        return None  # unlimited: no level to reach, in this period or any other
    start_us, end_us = to_us(b.period.start), to_us(b.period.end)
    usage = _usage_from(conn, meter, ent.meter, customer, start_us, end_us, now_us)
    last = end_us - 1
    if usage(last) <= s.usage:  # nothing open, nothing stamped ahead in this period
        return end_us if _due_at_start(conn, catalog, customer, feature, b.period.end) else None
    targets = _targets(conn, customer, feature, start_us, s, ent, view)
    goal = min((q for q in targets if q > s.usage), default=None)
    if goal is None or usage(last) < goal:
        return end_us  # open streams run into the next period: look again when it starts
    lo, hi = now_us, last  # usage(lo) < goal <= usage(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if usage(mid) >= goal:
            hi = mid
        else:
            lo = mid
    return hi


def _usage_from(conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, now_us: int
                ) -> Callable[[int], Decimal]:
    """The meter's usage in [lo, hi) at instants from `now_us` on, as time alone moves it.
    A duration meter is read once (a snapshot, then every instant costs no read); other
    kinds move only by events stamped ahead, rare enough to read each instant asked about."""
    if spec.aggregation == "duration":
        snap = meters.snapshot(conn, spec, meter, customer, lo, hi, now_us)
        return lambda t: meters.snapshot_usage(spec, snap, t)
    return lambda t: meters.usage(conn, spec, meter, customer, lo, hi, t)


def _due_at_start(conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, start: datetime) -> bool:
    """Whether the period starting at `start` needs an evaluation when it starts: something of
    the customer is stamped there or later, or its standing starts at a level not yet fired."""
    if customer_state.read(conn, customer)[1] >= to_us(start):
        return True
    try:
        b = balance(conn, catalog, customer, feature, start)
    except NotFound:  # the plan in force then has no such feature
        return False
    s = b.standing
    targets = _targets(conn, customer, feature, to_us(b.period.start), s, b.entitlement, b.view)
    return any(s.usage >= q for q in targets)


def _targets(conn: Connection, customer: str, feature: str, start_us: int, s: model.Standing, ent, view) -> list[Decimal]:  # type: ignore[no-untyped-def]
    if s.limit is None:
        return []
    done = repo.fired_keys(conn, customer, feature, start_us)
    out = [t.percent_used * s.limit / model.HUNDRED for t in model.thresholds(ent.notify) if t.key not in done]
    if s.hard_limit is not None and BLOCKED not in done:
        out.append(s.hard_limit)
    if view.spec.auto_upgrade and view.plan.next_plan:
        out.append(s.limit)
    return out


def refresh(conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, now: datetime) -> int | None:
    due = next_crossing(conn, catalog, customer, feature, now)
    repo.set_wakeup(conn, customer, feature, due)
    return due


def refresh_meters(conn: Connection, catalog: LoadedCatalog, customer: str, meter_names: set[str], now: datetime) -> None:
    view = customers.view(conn, catalog, customer, to_us(now))
    for feature, ent in view.plan.entitlements.items():
        if ent.meter in meter_names and ent.allowance is not None:
            refresh(conn, catalog, customer, feature, now)


def settle(conn: Connection, catalog: LoadedCatalog, customer: str | None, clock: Callable[[], datetime],
           limit: int = 200) -> int:
    """Evaluate the customers whose usage changed since their last evaluation (one, or any).

    The instant is read from `clock` after the pending marks are claimed: a mark claimed here
    was committed with its events, so their instants are behind that reading. An instant
    taken before waiting for the claim could precede the last event of another process,
    and its notices (the block, say) would then never be recorded."""
    names = repo.take_pending(conn, customer, limit)
    if not names:
        return 0
    now = clock()
    for name in names:
        if name in catalog.spec.customers:
            evaluate_all(conn, catalog, name, now, to_us(now))
            refresh_meters(conn, catalog, name, set(catalog.spec.meters), now)
    return len(names)


def settle_before_read(engine: Engine, catalogs: CatalogCache, customer: str, clock: Callable[[], datetime]) -> None:
    """Reads of balances and notices first settle the customer's pending evaluation, so they
    always reflect every committed event (an auto-upgrade included). Costs one lookup when
    nothing is pending."""
    with engine.connect() as conn:
        if not repo.is_pending(conn, customer):
            return
    with unit_of_work(engine) as conn:
        settle(conn, catalogs.current(conn), customer, clock)


def tick(engine: Engine, catalogs: CatalogCache, clock: Callable[[], datetime], limit: int = 1000) -> int:
    """Settle the pending customers, then evaluate every wake-up due by now, each at its own
    instant, in time order (one crossing may schedule the next, also due already); how many ran."""
    ran = 0
    while True:
        with unit_of_work(engine) as conn:
            settled = settle(conn, catalogs.current(conn), None, clock)
        if not settled:
            break
        ran += settled
    now = clock()
    while ran < limit:
        with unit_of_work(engine) as conn:
            catalog = catalogs.current(conn)
            due = repo.due_wakeups(conn, to_us(now), limit=1)
            if not due:
                return ran
            w = due[0]
            at = from_us(w.due_us)
            if _still_has(conn, catalog, w.customer, w.feature, w.due_us):
                evaluate(conn, catalog, w.customer, w.feature, at, to_us(now))
                refresh(conn, catalog, w.customer, w.feature, at)
            else:
                repo.set_wakeup(conn, w.customer, w.feature, None)
            ran += 1
    return ran


def _still_has(conn: Connection, catalog: LoadedCatalog, customer: str, feature: str, at_us: int) -> bool:
    """Whether a wake-up still concerns a feature of the customer: a plan change (or a new
    catalog) since it was set may have taken the feature away, and a wake-up left due would
    stop every pass at it, holding back all the wake-ups due after it."""
    if customer not in catalog.spec.customers:
        return False
    return feature in customers.view(conn, catalog, customer, at_us).plan.entitlements


class Scheduler:
    """The loop inside `serve`: sleeps until the next wake-up (checking at least every
    `poll` seconds for wake-ups set by other processes)."""

    def __init__(self, engine: Engine, catalogs: CatalogCache, clock: Callable[[], datetime],
                 wake: threading.Event, poll: float = 2.0, coalesce: float = 0.1):
        self.engine, self.catalogs, self.clock, self.poll = engine, catalogs, clock, poll
        # After a pass, let batches gather for this long: one evaluation per customer then
        # covers all of them (a busy ingest would otherwise evaluate after every batch).
        self.coalesce = coalesce
        self.wake = wake  # set after each committed batch: evaluate without waiting for the poll
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quotameter-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping:
            self.wake.clear()
            try:
                tick(self.engine, self.catalogs, self.clock)
                with self.engine.connect() as conn:
                    due = repo.next_wakeup(conn)
            except Exception:  # noqa: BLE001 - keep the loop alive; the error is logged
                log.exception("scheduler tick failed")
                due = None
            wait = self.poll
            if due is not None:
                wait = min(wait, max(0.0, (due - to_us(self.clock())) / 1e6))
            if self.wake.wait(wait) and not self._stopping:
                time.sleep(self.coalesce)
