"""Incremental meter state must equal a recomputation from the raw events.

Events are generated around a month boundary, then ingested shuffled, in random batches,
with exact repeats (duplicates) and late arrivals. For random instants and windows, the
usage read from the incremental state must equal the definition applied to the unique
events, and a rebuild from the raw events must not change any answer. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import validate_catalog
from quotameter.context import Context
from quotameter.meters import service as meters
from quotameter.meters.model import CONSUME_SOURCE, CONSUME_UNITS, MAX_CONSUME_UNITS, EventFacts
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases.record import prepare, store
from support import at, fresh_catalog, ingest_batches, iso

BASE = at("2026-03-31T20:00:00Z")  # the March/April boundary is 4 hours in
SPAN_MINUTES = 8 * 60
US = 1_000_000

CATALOG = {
    "meters": {
        "n": {"event_type": "x", "aggregation": "count", "filter": {"kind": ["a", "b"]}},
        "total": {"event_type": "x", "aggregation": "sum", "value_property": "v"},
        "peak": {"event_type": "x", "aggregation": "max", "value_property": "v"},
        "last": {"event_type": "x", "aggregation": "latest", "value_property": "v"},
        "users": {"event_type": "x", "aggregation": "unique_count", "value_property": "user"},
        "level": {
            "event_type": "g",
            "aggregation": "gauge",
            "value_property": "set",
            "delta_property": "d",
        },
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "idle_timeout": 600,
            "unit": "minute",
        },
        "raw_seconds": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "unit": "second",
        },
    },
    "customers": {"c1": {"plan": "p"}, "c2": {"plan": "p", "timezone": "Asia/Kolkata"}},
    "plans": {"p": {}},
}
SPEC = validate_catalog(CATALOG)


def _instant(minute: int, micros: int) -> str:
    return iso(BASE + timedelta(minutes=minute, microseconds=micros))


minute = st.integers(0, SPAN_MINUTES)
micros = st.sampled_from([0, 0, 0, 1, 250_000, 59_999_999])
customer = st.sampled_from(["c1", "c2"])
small_number = st.decimals(
    min_value=-50, max_value=50, places=1, allow_nan=False, allow_infinity=False
)


@st.composite
def simple_event(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "x",
        "subject": draw(customer),
        "time": _instant(draw(minute), draw(micros)),
        "data": {
            "kind": draw(st.sampled_from(["a", "b", "c"])),
            "v": str(draw(small_number)),
            "user": draw(st.sampled_from(["u1", "u2", "u3", "u4"])),
        },
    }


@st.composite
def gauge_event(draw: st.DrawFn) -> dict[str, Any]:
    data = (
        {"set": str(draw(small_number))}
        if draw(st.booleans()) and draw(st.booleans())
        else {"d": str(draw(small_number))}
    )
    return {
        "type": "g",
        "subject": draw(customer),
        "time": _instant(draw(minute), draw(micros)),
        "data": data,
    }


@st.composite
def media_event(draw: st.DrawFn) -> dict[str, Any]:
    user = draw(st.sampled_from(["u1", "u2"]))
    data: dict[str, Any] = {
        "user": user,
        "stream": f"{user}/{draw(st.sampled_from(['mic', 'cam', 'screen']))}",
    }
    m = draw(minute)
    if draw(st.integers(0, 9)) == 0:
        start, length, end = draw(micros), draw(st.integers(0, 90)), draw(micros)
        data["start"] = _instant(m, start)
        # Within the same minute an end drawn before the start would make an event refused by right.
        data["end"] = _instant(m + length, end if length else max(start, end))
    else:
        data["action"] = draw(st.sampled_from(["start", "start", "stop", "stop", "heartbeat"]))
    return {"type": "m", "subject": draw(customer), "time": _instant(m, draw(micros)), "data": data}


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    events = draw(
        st.lists(st.one_of(simple_event(), gauge_event(), media_event()), min_size=1, max_size=45)
    )
    for i, ev in enumerate(events):
        ev.update(specversion="1.0", id=f"e{i}", source=draw(st.sampled_from(["s", "t"])))
    # Arrival: shuffled, with exact repeats, cut into batches.
    repeats = draw(st.lists(st.sampled_from(events), max_size=10))
    arrival = draw(st.permutations(events + repeats))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=5)))
    batches = [
        arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if b > a
    ]
    return events, batches


def _reset(engine: Engine) -> None:
    fresh_catalog(engine, CATALOG)


def _expected(
    events: list[dict[str, Any]], meter: str, cust: str, lo: int, hi: int, at_us: int
) -> Decimal:
    from quotameter.events.model import parse_event
    from quotameter.meters.model import interpret

    spec = SPEC.meters[meter]
    items = []
    for raw in events:
        ev = parse_event(raw)
        if ev.subject == cust and ev.type == spec.event_type and spec.matches(ev.data):
            facts = EventFacts(cust, to_us(ev.time), f"{ev.source}\x01{ev.id}", ev.data)  # type: ignore[arg-type]
            items.append(interpret(spec, facts))
    return meters.usage_of(spec, items, lo, hi, at_us)


def _windows(draw_times: list[int]) -> list[tuple[int, int]]:
    month_edge = to_us(at("2026-04-01T00:00:00Z"))
    kolkata_edge = to_us(at("2026-03-31T18:30:00Z"))
    far = 40 * 24 * 3600 * US
    windows = [
        (month_edge - far, month_edge),
        (month_edge, month_edge + far),
        (kolkata_edge - far, kolkata_edge),
        (kolkata_edge, kolkata_edge + far),
    ]
    a, b = sorted(draw_times[:2])
    windows.append((a, b + 1))
    return windows


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
# QUOTAMETER_PROPERTY_EXAMPLES=1000 for a longer soak than CI's.
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=scenario(), probe=st.lists(st.tuples(minute, micros), min_size=3, max_size=3))
def test_incremental_usage_equals_recomputation(engine: Engine, data, probe) -> None:  # type: ignore[no-untyped-def]
    events, batches = data
    _reset(engine)
    loaded = catalogs.LoadedCatalog(1, SPEC)
    ingest_batches(engine, loaded, batches)
    instants = [to_us(BASE + timedelta(minutes=m, microseconds=u)) for m, u in probe]
    instants.append(to_us(BASE + timedelta(days=2)))

    def answers() -> dict[tuple, Decimal]:
        out = {}
        with engine.connect() as conn:
            for meter, spec in SPEC.meters.items():
                for cust in ("c1", "c2"):
                    for at_us in instants:
                        for lo, hi in _windows(instants):
                            out[(meter, cust, at_us, lo, hi)] = meters.usage(
                                conn, spec, meter, cust, lo, hi, at_us
                            )
        return out

    got = answers()
    for (meter, cust, at_us, lo, hi), value in got.items():
        assert value == _expected(events, meter, cust, lo, hi, at_us), (meter, cust, at_us, lo, hi)

    with unit_of_work(engine) as conn:
        for meter in SPEC.meters:
            meters.rebuild(conn, SPEC, meter)
    assert answers() == got


# --- consumes: one event per consumption, counted as its units --------------------------------


@st.composite
def consumed(draw: st.DrawFn) -> dict[str, Any]:
    """An event of the consume source as consume records it (one per consumption, carrying up
    to a billion units), or as it did before (one per unit, without them). It carries every
    property the meters of its type read, as a consume must for its event to be recorded."""
    ev = draw(simple_event())
    ev["data"]["kind"] = draw(st.sampled_from(["a", "b"]))
    units = draw(st.one_of(st.none(), st.integers(1, 9), st.integers(1, MAX_CONSUME_UNITS)))
    if units is not None:
        ev["data"][CONSUME_UNITS] = units
    return {**ev, "source": CONSUME_SOURCE}


@st.composite
def forged(draw: st.DrawFn) -> dict[str, Any]:
    """A user's event with the units property: plain data, it counts one."""
    ev = draw(simple_event())
    ev["data"][CONSUME_UNITS] = draw(st.integers(2, MAX_CONSUME_UNITS))
    return ev


@st.composite
def consume_scenario(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    events = draw(
        st.lists(st.one_of(consumed(), forged(), simple_event()), min_size=1, max_size=30)
    )
    for i, ev in enumerate(events):
        ev.update(specversion="1.0", id=f"e{i}")
        ev.setdefault("source", draw(st.sampled_from(["s", "t"])))
    repeats = draw(st.lists(st.sampled_from(events), max_size=8))
    arrival = draw(st.permutations(events + repeats))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=4)))
    return events, [
        arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if b > a
    ]


def _counted(events: list[dict[str, Any]], cust: str, lo: int, hi: int) -> int:
    """Meter `n` by hand: matching events once each, a consume's as its units."""
    total = 0
    for ev in events:
        t = to_us(at(ev["time"]))
        if ev["subject"] == cust and ev["data"]["kind"] in ("a", "b") and lo <= t < hi:
            total += ev["data"].get(CONSUME_UNITS, 1) if ev["source"] == CONSUME_SOURCE else 1
    return total


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")) // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=consume_scenario(), probe=st.lists(st.tuples(minute, micros), min_size=3, max_size=3))
def test_consumes_of_large_amounts_count_as_their_units(engine: Engine, data, probe) -> None:  # type: ignore[no-untyped-def]
    events, batches = data
    _reset(engine)
    loaded = catalogs.LoadedCatalog(1, SPEC)
    for batch in batches:
        with unit_of_work(engine) as conn:
            result = store(Context(conn, loaded), prepare(loaded, batch, 0, consume=True))
        assert result.rejected == []
    instants = [to_us(BASE + timedelta(minutes=m, microseconds=u)) for m, u in probe]
    instants.append(to_us(BASE + timedelta(days=2)))
    simple = [name for name, spec in SPEC.meters.items() if spec.event_type == "x"]

    def answers() -> dict[tuple, Decimal]:
        with engine.connect() as conn:
            return {
                (meter, cust, at_us, lo, hi): meters.usage(
                    conn, SPEC.meters[meter], meter, cust, lo, hi, at_us
                )
                for meter in simple
                for cust in ("c1", "c2")
                for at_us in instants
                for lo, hi in _windows(instants)
            }

    got = answers()
    for (meter, cust, at_us, lo, hi), value in got.items():
        assert value == _expected(events, meter, cust, lo, hi, at_us), (meter, cust, at_us, lo, hi)
        if meter == "n":
            assert value == _counted(events, cust, lo, min(hi, at_us + 1)), (cust, at_us, lo, hi)
    with engine.connect() as conn:
        for cust in ("c1", "c2"):
            for lo, hi in _windows(instants):
                assert (
                    meters.recompute_usage(conn, SPEC.meters["n"], cust, lo, hi, instants[-1])
                    == got[("n", cust, instants[-1], lo, hi)]
                )
    with unit_of_work(engine) as conn:
        for meter in simple:
            meters.rebuild(conn, SPEC, meter)
    assert answers() == got
