"""A duration meter's snapshot answers, in memory, what its read answers at every later instant.

The scheduler reads a snapshot once and asks it about many instants (finding when time alone
brings usage to a level). For random stream histories (open, idle, merged, explicit spans,
late and duplicate arrivals, spans ending after the snapshot), the snapshot's usage at any
instant from its own on must equal `meters.usage` there. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from meters.test_incremental import (
    BASE,
    SPEC,
    _reset,
    _windows,
    media_event,
    micros,
    minute,
    scenario,
)
from quotameter.catalog import service as catalogs
from quotameter.meters import service as meters
from quotameter.timeutil import to_us
from support import ingest_batches


@st.composite
def media_scenario(draw: st.DrawFn) -> tuple[list, list]:
    """Many stream events of few users: open streams overlapping closed ones of the same user."""
    events = draw(st.lists(media_event(), min_size=1, max_size=40))
    for i, ev in enumerate(events):
        ev.update(specversion="1.0", id=f"e{i}", source="s", subject="c1")
    arrival = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=4)))
    return events, [
        arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if b > a
    ]


DURATIONS = [name for name, spec in SPEC.meters.items() if spec.aggregation == "duration"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "70")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.one_of(scenario(), media_scenario()),
    taken=st.tuples(minute, micros),
    later=st.lists(st.tuples(st.integers(0, 24 * 60), micros), min_size=1, max_size=6),
)
def test_snapshot_usage_equals_the_read(engine: Engine, data, taken, later) -> None:  # type: ignore[no-untyped-def]
    _, batches = data
    _reset(engine)
    loaded = catalogs.LoadedCatalog(1, SPEC)
    ingest_batches(engine, loaded, batches)
    t0 = to_us(BASE + timedelta(minutes=taken[0], microseconds=taken[1]))
    instants = [t0, t0 + 1] + [t0 + m * 60 * 1_000_000 + u for m, u in later]
    with engine.connect() as conn:
        for meter in DURATIONS:
            spec = SPEC.meters[meter]
            for cust in ("c1", "c2"):
                for lo, hi in _windows(instants):
                    snap = meters.snapshot(conn, spec, meter, cust, lo, hi, t0)
                    for t in instants:
                        want = meters.usage(conn, spec, meter, cust, lo, hi, t)
                        assert meters.snapshot_usage(spec, snap, t) == want, (
                            meter,
                            cust,
                            lo,
                            hi,
                            t0,
                            t,
                        )
