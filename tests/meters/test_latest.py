"""A stream carries on from its latest row only when every new event comes after its stored ones.

The latest derived row of a stream keeps the instant of its latest event, also when that
event made no span (a heartbeat or stop of a closed stream, a start closed by the idle
timeout before any other event); any new event at or before that instant replays the
stream from the event log. Here events crowd a few instants (ties of time, of action and
of order key), arrive in any order and batching, and the stored spans must be exactly the
ones replayed from all events at once. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import validate_catalog
from quotameter.meters.durations import idle_us
from quotameter.meters.spans import Span, StreamEvent, replay
from quotameter.store.tables import stream_spans
from quotameter.timeutil import to_us
from support import at, fresh_catalog, ingest_batches, iso

BASE = at("2026-03-31T22:00:00Z")
CATALOG = {
    "meters": {
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "idle_timeout": 60,
            "unit": "second",
        },
        "talk": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "unit": "second",
        },
    },
    "customers": {"c": {"plan": "p"}},
    "plans": {"p": {}},
}
SPEC = validate_catalog(CATALOG)


@st.composite
def stream_event(draw: st.DrawFn) -> dict[str, Any]:
    # Three instants a minute apart, and one a microsecond after the first: ties everywhere,
    # and gaps both shorter and longer than the idle timeout.
    seconds = draw(st.sampled_from([0, 0, 30, 60, 61, 150]))
    t = BASE + timedelta(seconds=seconds, microseconds=draw(st.sampled_from([0, 0, 1])))
    return {
        "type": "m",
        "subject": "c",
        "time": iso(t),
        "source": draw(st.sampled_from(["a", "b"])),
        "data": {
            "stream": draw(st.sampled_from(["s1", "s1", "s2"])),
            "action": draw(st.sampled_from(["start", "start", "stop", "heartbeat"])),
        },
    }


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    events = draw(st.lists(stream_event(), min_size=1, max_size=12))
    for i, ev in enumerate(events):
        ev.update(specversion="1.0", id=f"e{i}")
    arrival = draw(st.permutations(events + draw(st.lists(st.sampled_from(events), max_size=3))))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=6)))
    batches = [
        arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if b > a
    ]
    return events, batches


def _replayed(events: list[dict[str, Any]], meter: str) -> set[tuple[str, Span]]:
    by_stream: dict[str, list[StreamEvent]] = {}
    for ev in events:
        t = to_us(at(ev["time"]))
        by_stream.setdefault(ev["data"]["stream"], []).append(
            StreamEvent(t, ev["data"]["action"], f"{ev['source']}\x01{ev['id']}")
        )
    idle = idle_us(SPEC.meters[meter])
    return {(key, span) for key, evs in by_stream.items() for span in replay(evs, idle)}


def _stored(engine: Engine, meter: str) -> set[tuple[str, Span]]:
    s = stream_spans.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.stream_key, s.start_us, s.end_us, s.last_us).where(s.meter == meter)
        ).all()
    # A closed span's `last` is its end, or on a stream's latest row its latest event;
    # marks (no length) stand for no span.
    return {
        (key, Span(start, end, last if end is None else end))
        for key, start, end, last in rows
        if end is None or end > start
    }


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=int(os.environ.get("QUOTAMETER_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=arrivals())
def test_stored_spans_are_the_replay_of_all_events_whatever_the_ties(
    engine: Engine, data: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]
) -> None:
    events, batches = data
    fresh_catalog(engine, CATALOG)
    ingest_batches(engine, catalogs.LoadedCatalog(1, SPEC), batches)
    for meter in SPEC.meters:
        assert _stored(engine, meter) == _replayed(events, meter), meter


# (seconds, microseconds, action) per batch, one stream: each case stores an event that makes
# no span, or that ties with a new one, before the batch that must replay it.
EDGES = {
    "an ignored heartbeat after a stop, then a start before it": [
        [(0, 0, "start"), (30, 0, "stop"), (60, 0, "heartbeat")],
        [(45, 0, "start")],
    ],
    "an ignored stop after a stop, then a start before it": [
        [(0, 0, "start"), (30, 0, "stop"), (50, 0, "stop")],
        [(40, 0, "start")],
    ],
    "a stop at the instant of the stored start": [[(60, 0, "start")], [(60, 0, "stop")]],
    "a heartbeat at the instant of the stored stop": [
        [(0, 0, "start"), (60, 0, "stop")],
        [(60, 0, "heartbeat")],
    ],
    "a start at the instant of the stored start": [
        [(0, 0, "start"), (60, 0, "heartbeat")],
        [(0, 0, "start")],
    ],
    "a lone stop, then a start before it": [[(60, 0, "stop")], [(30, 0, "start")]],
    "a start closed by the idle timeout with no length, then a stop before it": [
        [(0, 0, "start"), (150, 0, "heartbeat")],
        [(30, 0, "stop")],
    ],
    "an open span idled by a later batch, then a heartbeat inside it": [
        [(0, 0, "start")],
        [(150, 0, "heartbeat")],
        [(30, 0, "heartbeat")],
    ],
    "a mark carried on, then a start before its latest event": [
        [(0, 0, "start"), (150, 0, "stop")],
        [(160, 0, "heartbeat")],
        [(155, 0, "start")],
    ],
    "a mark replaced by a span, then a late stop": [
        [(30, 0, "stop")],
        [(40, 0, "start")],
        [(50, 0, "stop")],
        [(45, 0, "stop")],
    ],
    "a microsecond after the latest event carries on": [
        [(0, 0, "start"), (30, 0, "stop"), (60, 0, "heartbeat")],
        [(60, 1, "start")],
    ],
}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("case", list(EDGES))
def test_events_that_made_no_span_or_tie_are_replayed(engine: Engine, case: str) -> None:
    batches, n = [], 0
    for batch in EDGES[case]:
        batches.append([])
        for seconds, micros, action in batch:
            t = BASE + timedelta(seconds=seconds, microseconds=micros)
            batches[-1].append(
                {
                    "specversion": "1.0",
                    "id": f"e{n}",
                    "source": "a",
                    "type": "m",
                    "subject": "c",
                    "time": iso(t),
                    "data": {"stream": "s1", "action": action},
                }
            )
            n += 1
    fresh_catalog(engine, CATALOG)
    ingest_batches(engine, catalogs.LoadedCatalog(1, SPEC), batches)
    events = [ev for batch in batches for ev in batch]
    for meter in SPEC.meters:
        assert _stored(engine, meter) == _replayed(events, meter), meter
