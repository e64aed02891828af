"""A cached balance must always equal a fresh computation, whatever was written between."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements.cache import BalanceCache
from quotameter.entitlements.service import balance
from quotameter.grants import service as grants
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import grants as use_grants
from quotameter.usecases.record import ingest
from support import at, fresh_catalog, iso

BASE = at("2026-03-30T00:00:00Z")  # the month turns two days in
CATALOG = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count"},
        "mins": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "s",
            "unit": "minute",
            "rounding": {"unit_seconds": 60},
        },
        "idle": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "s",
            "unit": "minute",
            "rounding": {"unit_seconds": 60},
            "idle_timeout": 1200,
        },
    },
    "plans": {
        "seat": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"per_seat": 5},
                    "topup": {"block_size": 10, "price": "1"},
                },
                "mins": {"meter": "mins", "allowance": {"fixed": 30}},
                "idle": {"meter": "idle", "allowance": {"fixed": 45}},
            }
        },
        "flat": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 7},
                    "enforcement": "soft",
                    "slack": 0.5,
                },
                "mins": {"meter": "mins", "allowance": {"fixed": 60}},
                "idle": {"meter": "idle", "allowance": {"fixed": 20}, "enforcement": "hard"},
            }
        },
    },
    "customers": {"c": {"plan": "seat", "seats": 2}},
}

minute = st.integers(0, 4 * 24 * 60)
op = st.one_of(
    st.tuples(st.just("calls"), st.integers(1, 4), minute),
    st.tuples(st.just("stream"), st.sampled_from(["start", "stop"]), minute),
    st.tuples(st.just("seats"), st.integers(0, 6), minute),
    st.tuples(st.just("topup"), st.integers(1, 2), minute),
    st.tuples(st.just("plan"), st.sampled_from(["seat", "flat"]), minute),
    st.tuples(st.just("read"), st.sampled_from(["calls", "mins", "idle"]), minute),
)


def _reset(engine: Engine) -> catalogs.LoadedCatalog:
    from quotameter.catalog.model import validate_catalog

    fresh_catalog(engine, CATALOG)
    return catalogs.LoadedCatalog(1, validate_catalog(CATALOG))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(op, min_size=1, max_size=30))
def test_cached_balance_equals_fresh(engine: Engine, ops) -> None:  # type: ignore[no-untyped-def]
    catalog = _reset(engine)
    cache = BalanceCache()
    for n, (kind, arg, m) in enumerate(ops, start=1):
        when = BASE + timedelta(minutes=m)
        with unit_of_work(engine) as conn:
            if kind == "calls":
                ingest(
                    Context(conn, catalog),
                    [
                        {
                            "id": f"{n}.{k}",
                            "source": "t",
                            "type": "call",
                            "subject": "c",
                            "time": iso(when),
                        }
                        for k in range(arg)
                    ],
                    to_us(when),
                )
            elif kind == "stream":
                ingest(
                    Context(conn, catalog),
                    [
                        {
                            "id": str(n),
                            "source": "t",
                            "type": "m",
                            "subject": "c",
                            "time": iso(when),
                            "data": {"s": "mic", "action": arg},
                        }
                    ],
                    to_us(when),
                )
            elif kind == "seats":
                customers.change(
                    Context(conn, catalog),
                    "c",
                    seats=arg,
                    settings={},
                    effective_us=to_us(when),
                    recorded_us=to_us(when),
                )
            elif kind == "topup":
                with contextlib.suppress(Exception):
                    use_grants.add(
                        Context(conn, catalog),
                        grants.GrantRequest("c", f"g{n}", "calls", "topup", blocks=arg),
                        when,
                        to_us(when),
                    )
            elif kind == "plan":
                customers.change_plan(Context(conn, catalog), "c", arg, to_us(when), to_us(when))
        if kind == "read":
            with engine.connect() as conn:
                cached = cache.balance(conn, catalog, "c", arg, when)
                # Later instants of the same writes: from the entry, open streams moved by
                # time alone (past the idle timeout too), as a fresh computation moves them.
                later = [
                    cache.balance(conn, catalog, "c", arg, when + timedelta(minutes=k))
                    for k in (7, 31)
                ]
            with engine.connect() as conn:
                assert cached == balance(Context(conn, catalog), "c", arg, when)
                assert later == [
                    balance(Context(conn, catalog), "c", arg, when + timedelta(minutes=k))
                    for k in (7, 31)
                ]


stream_op = st.tuples(
    st.sampled_from(["mic", "cam"]),
    st.sampled_from(["start", "stop", "heartbeat"]),
    st.integers(0, 90),
)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(stream_op, min_size=1, max_size=12),
    first=st.integers(0, 60),
    later=st.lists(st.integers(0, 24 * 60), min_size=1, max_size=4),
)
def test_a_balance_with_open_streams_moves_with_time_from_its_entry(
    engine: Engine, ops, first, later
) -> None:  # type: ignore[no-untyped-def]
    """Read after the last event, then later with nothing written: every later read is a hit
    (no recomputation), and equals a fresh computation, idle timeouts and the month's end
    included."""
    catalog = _reset(engine)
    cache = BalanceCache()
    when = BASE
    with unit_of_work(engine) as conn:
        for n, (stream, action, gap) in enumerate(ops):
            when += timedelta(minutes=gap)
            ingest(
                Context(conn, catalog),
                [
                    {
                        "id": str(n),
                        "source": "t",
                        "type": "m",
                        "subject": "c",
                        "time": iso(when),
                        "data": {"s": stream, "action": action},
                    }
                ],
                to_us(when),
            )
    for feature in ("mins", "idle"):
        t = when + timedelta(minutes=first)
        with engine.connect() as conn:
            cache.balance(conn, catalog, "c", feature, t)
            hits = cache.hits
            for k in sorted(later):
                at_k = t + timedelta(minutes=k)
                cached = cache.balance(conn, catalog, "c", feature, at_k)
                assert cached == balance(Context(conn, catalog), "c", feature, at_k)
            if (
                t.month == (t + timedelta(minutes=max(later))).month
            ):  # a new period is computed afresh
                assert cache.hits == hits + len(later)
