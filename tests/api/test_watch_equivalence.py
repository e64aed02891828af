"""Skipping the evaluation of customers a batch cannot bring to a level changes no notice.

A random feed of several customers (media streams opened, kept alive, stopped, explicit
spans, counted events, gauge deltas; some a little late or stamped ahead) is ingested in
batches, the scheduler ticking after each, then time runs on (at times into a new period).
The notices recorded (kind, feature, level, instant) must equal those of evaluating every
touched customer after every batch, the behaviour before watches. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.notifications import scheduler
from quotameter.notifications import watch as watching
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import metadata, notices
from quotameter.timeutil import to_us
from quotameter.usecases.catalog import apply as apply_catalog
from quotameter.usecases.record import ingest
from support import at, iso

T0 = at("2026-03-10T12:00:00Z")
CUSTOMERS = ["a", "b", "c"]
CATALOG = {
    "meters": {
        # No idle timeout: with one, usage at an instant may be lower than at an earlier one (a
        # stream found idle counts as closed at its last event), so that evaluating at more or
        # fewer instants can re-arm a level the growth of a stream since found idle reached.
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "unit": "minute",
        },
        "calls": {"event_type": "call", "aggregation": "count"},
        "hours": {"event_type": "volume", "aggregation": "gauge", "delta_property": "d"},
    },
    "plans": {
        "p": {
            "entitlements": {
                "media": {
                    "meter": "media",
                    "allowance": {"per_seat": 20},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50, 90], "exhausted": True, "recipients": "admins"},
                },
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 12},
                    "enforcement": "soft",
                    "notify": {"percent_used": [50], "exhausted": True, "recipients": "admins"},
                },
                "volume": {
                    "meter": "hours",
                    "allowance": {"fixed": 10},
                    "enforcement": "overage",
                    "overage_limit": 5,
                    "notify": {"percent_used": [80], "recipients": "admins"},
                },
            }
        }
    },
    "customers": {c: {"plan": "p", "seats": 1, "admins": [f"ops@{c}.example"]} for c in CUSTOMERS},
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@st.composite
def item(draw: st.DrawFn) -> tuple[str, int, dict[str, Any]]:
    """(event type, offset in seconds from the batch's instant, data)."""
    offset = draw(st.sampled_from([0, 0, 0, -30, -200, 45]))
    kind = draw(st.sampled_from(["m", "m", "m", "span", "call", "volume"]))
    user = draw(st.sampled_from(["u1", "u2"]))
    stream = f"{user}/{draw(st.sampled_from(['mic', 'cam']))}"
    if kind == "m":
        return (
            "m",
            offset,
            {
                "user": user,
                "stream": stream,
                "action": draw(st.sampled_from(["start", "start", "heartbeat", "stop"])),
            },
        )
    if kind == "span":
        return "m", offset, {"user": user, "stream": stream, "length": draw(st.integers(1, 400))}
    if kind == "call":
        return "call", offset, {}
    return "volume", offset, {"d": str(draw(st.integers(-3, 4)))}


# Mostly minutes apart; now and then into the next month (a new period, a gauge's level carried in).
advance = st.integers(0, 600) | st.just(21 * 24 * 3600)
feed = st.lists(
    st.tuples(advance, st.lists(st.tuples(st.sampled_from(CUSTOMERS), item()), max_size=6)),
    min_size=1,
    max_size=10,
)


def _unrounded(catalog: dict[str, Any]) -> dict[str, Any]:
    """The catalog with media counted to the microsecond: a watch's bound then has no rounding
    slack, so the instant it reaches a level can be the very instant usage does."""
    media = {k: v for k, v in catalog["meters"]["media"].items() if k != "rounding"}
    return {**catalog, "meters": {**catalog["meters"], "media": {**media, "unit": "second"}}}


# Two cases where the bound has no slack to spare. Two streams opened at the instant of an
# exact evaluation: the bound reaches 50 % at the very microsecond usage does. A stream opened
# when every level of the period is told: it runs into the next period, which has its own.
OVER_MONTH_END = 22 * 24 * 3600


def _start(customer: str, user: str) -> tuple[str, tuple[str, int, dict[str, Any]]]:
    return customer, ("m", 0, {"user": user, "stream": f"{user}/mic", "action": "start"})


def _span(customer: str, seconds: int) -> tuple[str, tuple[str, int, dict[str, Any]]]:
    return customer, ("m", 0, {"user": "u1", "stream": "u1/mic", "length": seconds})


def _run(engine: Engine, steps, skipping: bool, monkeypatch, catalog=CATALOG) -> list[tuple]:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "alembic_version":
                conn.execute(delete(table))
        apply_catalog(conn, catalog, catalogs.EMPTY, 0)
    if not skipping:  # the behaviour before watches: every touched customer is evaluated
        monkeypatch.setattr(watching, "follows", lambda watches, version: False)
    cache, clock = catalogs.CatalogCache(), Clock()
    n = 0
    for advance, batch in steps:
        clock.now += timedelta(seconds=advance)
        events = []
        for customer, (type_, offset, data) in batch:
            t = clock.now + timedelta(seconds=offset)
            if "length" in data:
                data = {
                    "user": data["user"],
                    "stream": data["stream"],
                    "start": iso(t - timedelta(seconds=data["length"])),
                    "end": iso(t),
                }
            n += 1
            events.append(
                {
                    "specversion": "1.0",
                    "id": f"e{n}",
                    "source": "s",
                    "type": type_,
                    "subject": customer,
                    "time": iso(t),
                    "data": data,
                }
            )
        if events:
            with unit_of_work(engine) as conn:
                assert (
                    ingest(Context(conn, cache.current(conn)), events, to_us(clock.now)).rejected
                    == []
                )
        scheduler.tick(engine, cache, clock)
    for _ in range(3):  # time alone: streams left open cross levels
        clock.now += timedelta(minutes=17)
        scheduler.tick(engine, cache, clock)
    monkeypatch.undo()
    with engine.connect() as conn:
        n_ = notices.c
        return [
            tuple(r)
            for r in conn.execute(
                select(n_.customer, n_.type, n_.feature, n_.percent, n_.at_us).order_by(
                    n_.customer, n_.at_us, n_.feature, n_.type, n_.percent
                )
            )
        ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=feed)
def test_skipping_by_watches_records_the_same_notices(engine: Engine, steps, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _run(engine, steps, True, monkeypatch) == _run(engine, steps, False, monkeypatch)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=feed)
@example(steps=[(0, [_start("c", "u1")]), (0, [_start("c", "u2")])])
@example(steps=[(0, [_span("a", 384)]), (246, [_start("a", "u1")]), (OVER_MONTH_END, [])])
def test_skipping_records_the_same_notices_when_usage_is_not_rounded(
    engine: Engine, steps, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    catalog = _unrounded(CATALOG)
    assert _run(engine, steps, True, monkeypatch, catalog) == _run(
        engine, steps, False, monkeypatch, catalog
    )
