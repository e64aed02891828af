"""A batch folds the events of many customers at once (meters.durations, set-based writes).

Each batch here touches many customers, members and streams together: the incremental
usage must still equal the recomputation from raw events for every customer, and the
number of SQL statements a batch runs must not grow with the number of customers it
touches. Both run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import validate_catalog
from quotameter.context import Context
from quotameter.meters import service as meters
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases.record import ingest
from support import at, fresh_catalog, ingest_batches, iso, statements

BASE = at("2026-03-31T22:00:00Z")  # the month boundary is 2 hours in
CUSTOMERS = [f"org{i}" for i in range(100)]
CATALOG = {
    "meters": {
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "idle_timeout": 1800,
            "unit": "minute",
        },
        # Merged per member without an idle timeout: overlapping streams of one member join.
        "talk": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "unit": "second",
        },
        "raw_seconds": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "unit": "second",
        },
        "sessions": {"event_type": "s", "aggregation": "count"},
        "users": {"event_type": "s", "aggregation": "unique_count", "value_property": "user"},
        "level": {"event_type": "g", "aggregation": "gauge", "delta_property": "d"},
    },
    "customers": {c: {"plan": "p"} for c in CUSTOMERS},
    "plans": {"p": {}},
}
SPEC = validate_catalog(CATALOG)
US = 1_000_000

minute = st.integers(0, 150)
micros = st.sampled_from([0, 0, 1, 500_000])


@st.composite
def media_event(draw: st.DrawFn, customer: str) -> dict[str, Any]:
    """A member toggles mic/camera/screen, a new stream id per toggle, overlapping each other."""
    user = draw(st.sampled_from(["u1", "u2"]))
    stream = f"{user}/{draw(st.sampled_from(['mic', 'cam', 'screen']))}/{draw(st.integers(0, 1))}"
    m = draw(minute)
    data: dict[str, Any] = {"user": user, "stream": stream}
    if draw(st.integers(0, 11)) == 0:
        length = draw(st.integers(0, 30))
        data["start"], data["end"] = (
            iso(BASE + timedelta(minutes=m)),
            iso(BASE + timedelta(minutes=m + length)),
        )
    else:
        data["action"] = draw(
            st.sampled_from(["start", "start", "stop", "stop", "heartbeat", "heartbeat"])
        )
    return {
        "type": "m",
        "subject": customer,
        "time": iso(BASE + timedelta(minutes=m, microseconds=draw(micros))),
        "data": data,
    }


@st.composite
def other_event(draw: st.DrawFn, customer: str) -> dict[str, Any]:
    t = iso(BASE + timedelta(minutes=draw(minute), microseconds=draw(micros)))
    if draw(st.booleans()):
        return {
            "type": "s",
            "subject": customer,
            "time": t,
            "data": {"user": draw(st.sampled_from(["u1", "u2"]))},
        }
    return {
        "type": "g",
        "subject": customer,
        "time": t,
        "data": {"d": str(draw(st.integers(-3, 3)))},
    }


@st.composite
def toggle(draw: st.DrawFn, customer: str) -> list[dict[str, Any]]:
    """One stream switched on, maybe kept alive, maybe switched off: overlapping its member's
    others."""
    user = draw(st.sampled_from(["u1", "u2"]))
    stream = f"{user}/{draw(st.sampled_from(['mic', 'cam', 'screen']))}/{draw(st.integers(0, 1))}"
    m, length = draw(minute), draw(st.integers(0, 60))
    moments = [
        (m, "start"),
        *((m + draw(st.integers(0, length)), "heartbeat") for _ in range(draw(st.integers(0, 2)))),
    ]
    if draw(st.integers(0, 3)):
        moments.append((m + length, "stop"))
    return [
        {
            "type": "m",
            "subject": customer,
            "time": iso(BASE + timedelta(minutes=t, microseconds=draw(micros))),
            "data": {"user": user, "stream": stream, "action": action},
        }
        for t, action in moments
    ]


@st.composite
def fleet(draw: st.DrawFn) -> tuple[list[str], list[list[dict[str, Any]]]]:
    customers = draw(st.lists(st.sampled_from(CUSTOMERS), min_size=5, max_size=30, unique=True))
    events: list[dict[str, Any]] = []
    for c in customers:
        for events_of_one in draw(st.lists(toggle(c), min_size=1, max_size=4)):
            events += events_of_one
        events += draw(st.lists(media_event(c), max_size=4))
        events += draw(st.lists(other_event(c), max_size=2))
    for i, ev in enumerate(events):
        ev.update(
            specversion="1.0", id=f"e{i}", source=draw(st.sampled_from(["p1", "p2", "p3", "p4"]))
        )
    # Arrival: shuffled (so late and out of order), with exact repeats, cut into batches.
    repeats = draw(st.lists(st.sampled_from(events), max_size=10))
    arrival = draw(st.permutations(events + repeats))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=4)))
    batches = [
        arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if b > a
    ]
    return customers, batches


def _reset(engine: Engine) -> None:
    fresh_catalog(engine, CATALOG)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")) // 3,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=fleet(), probe=st.lists(st.tuples(minute, micros), min_size=3, max_size=3))
def test_batches_of_many_customers_equal_recomputation(engine: Engine, data, probe) -> None:  # type: ignore[no-untyped-def]
    customers, batches = data
    _reset(engine)
    loaded = catalogs.LoadedCatalog(1, SPEC)
    ingest_batches(engine, loaded, batches)
    instants = sorted(to_us(BASE + timedelta(minutes=m, microseconds=u)) for m, u in probe)
    instants.append(to_us(BASE + timedelta(days=1)))
    month = to_us(at("2026-04-01T00:00:00Z"))
    windows = [
        (month - 40 * 24 * 3600 * US, month),
        (month, month + 40 * 24 * 3600 * US),
        (instants[0], instants[1] + 1),
    ]
    with engine.connect() as conn:
        for cust in customers:
            for meter, spec in SPEC.meters.items():
                for at_us in instants:
                    for lo, hi in windows:
                        assert meters.usage(
                            conn, spec, meter, cust, lo, hi, at_us
                        ) == meters.recompute_usage(conn, spec, cust, lo, hi, at_us), (
                            cust,
                            meter,
                            at_us,
                            lo,
                            hi,
                        )


# --- the statements of a batch do not grow with its customers ----------------------------------

EVENTS = 600


def _feed(customers: int, batch: int) -> list[dict[str, Any]]:
    """EVENTS events spread evenly over `customers`: the same shapes whatever their number.
    Batch 0 opens streams; batch 1 carries on (heartbeats, stops, new streams), repeats an
    event, and has one late event per customer (before its batch-0 events)."""
    out: list[dict[str, Any]] = []
    per = EVENTS // customers
    for c in range(customers):
        subject = CUSTOMERS[c]
        for i in range(per):
            n = batch * EVENTS + c * per + i
            t = BASE + timedelta(minutes=batch * 60 + i)
            user = f"u{i % 3}"
            kind = i % 6
            if kind < 3:
                action = "start" if batch == 0 else ("heartbeat", "stop", "start")[kind]
                stream = f"{user}/mic/{c}-{i}" + (
                    "-again" if batch == 1 and action == "start" else ""
                )
                data: dict[str, Any] = {"user": user, "stream": stream, "action": action}
                ev = {"type": "m", "data": data}
            elif kind == 3:
                ev = {
                    "type": "m",
                    "data": {
                        "user": user,
                        "stream": f"{user}/screen/{n}",
                        "start": iso(t),
                        "end": iso(t + timedelta(minutes=3)),
                    },
                }
            elif kind == 4:
                ev = {"type": "s", "data": {"user": user}}
            else:
                ev = {"type": "g", "data": {"d": "1"}}
            if batch == 1 and i == 0:
                t = BASE - timedelta(minutes=5)  # late: before everything of batch 0
            ev.update(
                specversion="1.0", id=f"e{n}", source=f"p{n % 4}", subject=subject, time=iso(t)
            )
            out.append(ev)
    if batch == 1:
        out.append(_feed(customers, 0)[0])  # an exact repeat
    return out


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_statements_per_batch_do_not_grow_with_customers(engine: Engine) -> None:
    """Except one read of the event log per customer with a late stream (its replay), which
    a batch in order never makes."""
    loaded = catalogs.LoadedCatalog(1, SPEC)
    counts = {}
    for customers in (10, 100):
        _reset(engine)
        for batch in (0, 1):
            events = _feed(customers, batch)
            with unit_of_work(engine) as conn, statements(engine) as seen:
                result = ingest(Context(conn, loaded), events, received_us=batch)
            assert result.rejected == [] and result.accepted == EVENTS
            replays = [s for s in seen if _REPLAY_READ.search(s)]
            assert len(replays) == (customers if batch == 1 else 0), replays
        counts[customers] = len(seen) - len(replays)
    assert abs(counts[100] - counts[10]) <= 2, counts
    assert counts[100] < 40, counts  # a fixed handful per kind of aggregation, not one per customer


# How a late stream's events are read back from the event log (events.repository.of_customer).
_REPLAY_READ = re.compile(r"FROM events\s+WHERE events\.subject = ")


# --- merged spans across batches: the cases a re-merge window must reach -----------------------


def _toggle(n: int, minute_: int, stream: str, action: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"t{n}",
        "source": "p1",
        "type": "m",
        "subject": "org1",
        "time": iso(BASE + timedelta(minutes=minute_)),
        "data": {"user": "u1", "stream": stream, "action": action},
    }


MERGES = {
    # A stream inside a merged span that began before it (the window must reach back).
    "inside": (
        [[(0, "a", "start"), (30, "a", "stop")], [(10, "b", "start"), (20, "b", "stop")]],
        30,
    ),
    # A stream joining two merged spans.
    "bridge": (
        [
            [(0, "a", "start"), (10, "a", "stop"), (20, "b", "start"), (30, "b", "stop")],
            [(5, "c", "start"), (25, "c", "stop")],
        ],
        30,
    ),
    # A stream reaching back over the start of a merged span, and on past its end.
    "around": (
        [
            [(10, "a", "start"), (20, "a", "stop")],
            [(0, "b", "start"), (15, "b", "stop")],
            [(18, "c", "start"), (40, "c", "stop")],
        ],
        40,
    ),
    # A late stop shortens a merged span whose stream was closed later.
    "late stop": (
        [
            [(0, "a", "start"), (30, "a", "stop"), (40, "b", "start"), (50, "b", "stop")],
            [(10, "a", "stop")],
        ],
        20,
    ),
    # A late start opens a stream again between two merged spans (the later start then only
    # counts as a sign of life).
    "late start": (
        [
            [(0, "a", "start"), (10, "a", "stop"), (20, "a", "start"), (30, "a", "stop")],
            [(12, "a", "start")],
        ],
        28,
    ),
}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("case", list(MERGES))
def test_merged_spans_across_batches(engine: Engine, case: str) -> None:
    batches, minutes = MERGES[case]
    _reset(engine)
    loaded = catalogs.LoadedCatalog(1, SPEC)
    n = 0
    for batch in batches:
        events = []
        for m, stream, action in batch:
            n += 1
            events.append(_toggle(n, m, stream, action))
        with unit_of_work(engine) as conn:
            assert ingest(Context(conn, loaded), events, received_us=0).rejected == []
    at_us = to_us(BASE + timedelta(days=1))
    with engine.connect() as conn:
        spec = SPEC.meters["talk"]
        got = meters.usage(conn, spec, "talk", "org1", 0, at_us, at_us)
        assert got == meters.recompute_usage(conn, spec, "org1", 0, at_us, at_us) == minutes * 60
