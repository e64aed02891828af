"""The demo's month: each organization ends where its story says, read back through the
balance service; nothing is stamped after `now`; loading again changes nothing."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import Engine, func, select

from quotameter.catalog.model import validate_catalog
from quotameter.catalog.service import CatalogCache
from quotameter.demo.load import SHOWN, DemoMonth, demo_catalog, load_demo, plan_month
from quotameter.entitlements.service import balance
from quotameter.meters import repository as meter_state
from quotameter.notifications import repository as notices
from quotameter.notifications.service import as_dict
from quotameter.periods import period_containing
from quotameter.store import tables
from quotameter.timeutil import to_us
from support import event

NOW = datetime(2026, 3, 24, 15, 30, tzinfo=timezone.utc)  # a Tuesday afternoon


def standings(engine: Engine, at: datetime) -> dict[tuple[str, str], dict[str, object]]:
    with engine.connect() as conn:
        catalog = CatalogCache().current(conn)
        return {(c, f): balance(conn, catalog, c, f, at).as_dict() for c, f in SHOWN}


def recorded(engine: Engine, customer: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [as_dict(row) for row in notices.listing(conn, customer)]


def latest_stamps(engine: Engine) -> dict[str, int | None]:
    """The latest instant in every column that records when something happened."""
    columns = [tables.events.c.time_us, tables.events.c.received_us, tables.catalogs.c.applied_us,
               tables.notices.c.at_us, tables.notices.c.recorded_us, tables.fired.c.at_us,
               tables.grants.c.effective_us, tables.grants.c.recorded_us,
               tables.seat_changes.c.effective_us, tables.seat_changes.c.recorded_us,
               tables.plan_changes.c.effective_us, tables.plan_changes.c.recorded_us,
               tables.stream_spans.c.last_us, tables.merged_spans.c.end_us, tables.gauge_points.c.t_us]
    with engine.connect() as conn:
        return {f"{c.table.name}.{c.name}": conn.execute(select(func.max(c))).scalar() for c in columns}


def test_a_month_puts_every_organization_where_its_story_says(engine: Engine) -> None:
    summary = load_demo(engine, NOW)
    b = standings(engine, NOW)

    near = b[("acme", "media")]
    assert Decimal(85) <= near["usage"] * 100 / near["limit"] < Decimal(95)
    assert near["granted"] == 250 and near["has_access"]  # the operator's credit
    assert {(n["type"], n["percent"]) for n in recorded(engine, "acme")} >= {("usage.threshold", 85)}

    blocked = b[("northwind", "media")]
    assert blocked["usage"] == blocked["limit"] == 2000
    assert blocked["remaining"] == 0 and blocked["has_access"] is False
    told = [n for n in recorded(engine, "northwind") if n["type"] == "access.blocked"]
    assert len(told) == 1 and told[0]["recipients"]["in_app"] and len(told[0]["recipients"]["members"]) == 4
    assert told[0]["at"] < NOW

    topped = b[("kestrel", "media")]
    assert topped["granted"] == 1000 and topped["limit"] == 3500 and topped["has_access"]
    kinds = [n["type"] for n in recorded(engine, "kestrel")]
    assert kinds.index("topup.applied") > kinds.index("usage.threshold")  # bought after the e-mails

    under = b[("brightline", "media")]
    assert under["included"] == 3000  # six seats: one added during the month
    assert under["usage"] * 100 / under["limit"] < 50

    gauge = b[("studio", "managed_media")]
    assert gauge["overage"] > 0 and gauge["usage"] > gauge["limit"]
    assert gauge["level"] < gauge["usage"] and gauge["has_access"]  # the peak is past

    docs = b[("docs", "sessions")]
    assert docs["plan"] == "sessions_200k" and docs["usage"] > 100_000
    upgrade = [n for n in recorded(engine, "docs") if n["type"] == "plan.upgraded"]
    assert len(upgrade) == 1 and upgrade[0]["at"] < NOW

    assert b[("orbit", "media")]["limit"] is None and b[("orbit", "media")]["usage"] > 0
    assert b[("callco", "audio_connector")]["limit"] is None

    with engine.connect() as conn:  # streams still running at now: merging and time matter
        for customer, meter in [("acme", "media_minutes"), ("callco", "streaming_minutes")]:
            assert meter_state.open_spans(conn, meter, customer, to_us(NOW))

    stamps = latest_stamps(engine)
    assert all(v is not None and v <= to_us(NOW) for v in stamps.values()), stamps

    states = {o.customer: o.state for o in summary.organizations}
    assert states["acme"].startswith("near its limit")
    assert states["northwind"].startswith("blocked")
    assert states["studio"].startswith("in overage")
    assert states["docs"].startswith("auto-upgraded from sessions_100k")
    assert states["brightline"].startswith("comfortably under")
    assert [row[0] for row in summary.table()] == [c for c, _ in SHOWN]
    with engine.connect() as conn:
        assert summary.events == conn.execute(select(func.count()).select_from(tables.events)).scalar()

    # Loading again with the same seed and now: the same month, nothing added.
    again = load_demo(engine, NOW)
    assert standings(engine, NOW) == b
    assert (again.events, again.notices, again.catalog_version) == (summary.events, summary.notices,
                                                                    summary.catalog_version)
    assert again.organizations == summary.organizations


CATALOG = validate_catalog(demo_catalog())


@functools.cache
def month(now: datetime, seed: int = 7) -> DemoMonth:
    return plan_month(CATALOG, now, seed)


def test_the_month_is_the_same_for_the_same_seed_and_now() -> None:
    first, second = month(NOW), plan_month(CATALOG, NOW, seed=7)
    assert first.events == second.events and first.operations == second.operations
    assert first.checks == second.checks
    assert plan_month(CATALOG, NOW, seed=8).events != first.events

    assert first.times == sorted(first.times) and first.times[-1] <= to_us(NOW)
    assert len({(e["source"], e["id"]) for e in first.events}) == len(first.events)
    assert {frozenset(e) for e in first.events} == {frozenset(event("t", "s", NOW))}  # CloudEvents as tests send them
    per_customer = Counter(e["subject"] for e in first.events)
    assert set(per_customer) == {c for c, _ in SHOWN} and per_customer["docs"] > 100_000


def test_every_event_is_in_its_customers_current_period() -> None:
    """Also early in a month, when most organizations have hardly begun theirs."""
    for now in (NOW, datetime(2026, 4, 1, 2, 0, tzinfo=timezone.utc)):
        starts = {}
        for key, spec in CATALOG.customers.items():
            kind = next(iter(CATALOG.plans[spec.plan].entitlements.values())).period
            starts[key] = to_us(period_containing(kind, now, tz=spec.timezone, anchor=spec.billing_anchor).start)
        planned = month(now)
        for ev, t in zip(planned.events, planned.times):
            assert starts[ev["subject"]] <= t <= to_us(now), ev
        assert all(starts[op.customer] <= op.at_us <= to_us(now) for op in planned.operations)
        assert all(starts[customer] < at <= to_us(now) for at, customer in planned.checks)
