"""The demo's month: each organization ends where its story says, read back through the
balance service, on every day of a month and in any machine zone; nothing is stamped after
`now`; loading again changes nothing."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select

from demo_story import (
    assert_the_printout_tells_it,
    assert_the_story_holds,
    process_zone,
    recorded,
    standings,
)
from quotameter.catalog.model import validate_catalog
from quotameter.demo.load import (
    SHOWN,
    STORY_DAYS,
    DemoMonth,
    demo_catalog,
    load_demo,
    plan_month,
    story_clock,
)
from quotameter.periods import period_containing
from quotameter.store import tables
from quotameter.timeutil import to_us
from support import event

NOW = datetime(2026, 3, 24, 15, 30, tzinfo=UTC)  # a Tuesday afternoon
UTC = UTC
CATALOG = validate_catalog(demo_catalog())


@functools.cache
def month(now: datetime, seed: int = 7) -> DemoMonth:
    return plan_month(CATALOG, now, seed)


def test_a_month_puts_every_organization_where_its_story_says(engine: Engine) -> None:
    summary = load_demo(engine, NOW)
    b = assert_the_story_holds(engine, NOW)
    upgrade = [n for n in recorded(engine, "docs") if n["type"] == "plan.upgraded"]
    assert upgrade[0]["at"] < NOW  # the evening before: past the first week of a month

    assert_the_printout_tells_it({o.customer: o.state for o in summary.organizations})
    assert [row[0] for row in summary.table()] == [c for c, _ in SHOWN]
    with engine.connect() as conn:
        assert (
            summary.events == conn.execute(select(func.count()).select_from(tables.events)).scalar()
        )

    # Loading again with the same seed and now: the same month, nothing added.
    again = load_demo(engine, NOW)
    assert standings(engine, NOW) == b
    assert (again.events, again.notices, again.catalog_version) == (
        summary.events,
        summary.notices,
        summary.catalog_version,
    )
    assert again.organizations == summary.organizations


# The demo run on the 1st at 00:30 after a 28-day month, on the 15th of a 30-day month (when
# studio's billing cycle begins again) and late on the last day of a 31-day month (when it is
# already the 1st in Tokyo): each is moved back whole days, into a month of that length.
FIRST = datetime(2027, 3, 1, 0, 30, tzinfo=UTC)
FIFTEENTH = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
LAST = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
# The earliest the clock stays where it is in March 2026: New York's month is three days old
# (and it is Wednesday, Tokyo's third working day, afternoon): three days must do for every story.
THREE_DAYS = datetime(2026, 3, 4, 5, 30, tzinfo=UTC)
EAST, WEST = "Asia/Tokyo", "America/Los_Angeles"


@pytest.mark.parametrize("zone", ["UTC", EAST, WEST])
@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (FIRST, datetime(2027, 2, 28, 0, 30, tzinfo=UTC)),
        (
            datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
            datetime(2026, 11, 30, 0, 30, tzinfo=UTC),
        ),  # New York: 30 Nov
        (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
        # Three days of December in London and Tokyo, not yet in New York: back to November.
        (datetime(2026, 12, 4, 2, 0, tzinfo=UTC), datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        (
            datetime(2026, 12, 4, 5, 0, tzinfo=UTC),
            datetime(2026, 12, 4, 5, 0, tzinfo=UTC),
        ),  # New York's too
        (THREE_DAYS, THREE_DAYS),
        (FIFTEENTH, datetime(2026, 11, 14, 12, 0, tzinfo=UTC)),  # studio's cycle began at midnight
        (datetime(2026, 11, 17, 23, 59, tzinfo=UTC), datetime(2026, 11, 14, 23, 59, tzinfo=UTC)),
        (datetime(2026, 11, 18, 0, 0, tzinfo=UTC), datetime(2026, 11, 18, 0, 0, tzinfo=UTC)),
        (LAST, datetime(2026, 12, 30, 23, 30, tzinfo=UTC)),  # Tokyo's January is 8.5 hours old
        (datetime(2026, 11, 20, 15, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 0, tzinfo=UTC)),
    ],
)
def test_the_demo_clock_goes_back_whole_days_until_every_period_has_three(
    today: datetime, expected: datetime, zone: str
) -> None:
    with process_zone(zone):
        assert story_clock(today) == expected
        assert (
            story_clock(today.astimezone(timezone(timedelta(hours=-10)))) == expected
        )  # the same instant
    for customer, _ in SHOWN:
        spec, plan = CATALOG.customers[customer], CATALOG.plans[CATALOG.customers[customer].plan]
        kind = next(iter(plan.entitlements.values())).period
        start = period_containing(
            kind, expected, tz=spec.timezone, anchor=spec.billing_anchor
        ).start
        assert expected - start >= timedelta(days=STORY_DAYS), customer


@pytest.mark.parametrize(
    ("db_url", "today", "zone"),
    [
        ("sqlite", FIRST, WEST),
        ("postgresql", FIFTEENTH, EAST),
        ("sqlite", LAST, WEST),
        ("postgresql", THREE_DAYS, EAST),
    ],
    indirect=["db_url"],
)
def test_the_story_holds_on_any_day_of_a_month_in_any_zone(
    engine: Engine, today: datetime, zone: str
) -> None:
    """The default clock and the month loaded at it, with the machine's zone west or east of
    UTC (tests/demo/test_command.py runs the command itself in the others)."""
    with process_zone(zone):
        now = story_clock(today)
        summary = load_demo(engine, now)
    assert_the_story_holds(engine, now)
    assert_the_printout_tells_it({o.customer: o.state for o in summary.organizations})


def test_the_month_planned_is_the_same_in_any_machine_zone() -> None:
    """The 15th in the west (the other days and zones load or run the command in full)."""
    now = story_clock(FIFTEENTH)
    with process_zone("UTC"):
        utc = plan_month(CATALOG, now)
    with process_zone(WEST):
        west = plan_month(CATALOG, now)
    assert (west.events, west.operations, west.checks) == (utc.events, utc.operations, utc.checks)


def test_the_month_is_the_same_for_the_same_seed_and_now() -> None:
    first, second = month(NOW), plan_month(CATALOG, NOW, seed=7)
    assert first.events == second.events and first.operations == second.operations
    assert first.checks == second.checks
    assert plan_month(CATALOG, NOW, seed=8).events != first.events

    assert first.times == sorted(first.times) and first.times[-1] <= to_us(NOW)
    assert len({(e["source"], e["id"]) for e in first.events}) == len(first.events)
    assert {frozenset(e) for e in first.events} == {
        frozenset(event("t", "s", NOW))
    }  # CloudEvents as tests send them
    per_customer = Counter(e["subject"] for e in first.events)
    assert set(per_customer) == {c for c, _ in SHOWN} and per_customer["docs"] > 100_000


def test_every_event_is_in_its_customers_current_period() -> None:
    """Also early in a month, when most organizations have hardly begun theirs."""
    for now in (NOW, datetime(2026, 4, 1, 2, 0, tzinfo=UTC)):
        starts = {}
        for key, spec in CATALOG.customers.items():
            kind = next(iter(CATALOG.plans[spec.plan].entitlements.values())).period
            starts[key] = to_us(
                period_containing(kind, now, tz=spec.timezone, anchor=spec.billing_anchor).start
            )
        planned = month(now)
        for ev, t in zip(planned.events, planned.times, strict=True):
            assert starts[ev["subject"]] <= t <= to_us(now), ev
        assert all(starts[op.customer] <= op.at_us <= to_us(now) for op in planned.operations)
        assert all(starts[customer] < at <= to_us(now) for at, customer in planned.checks)
