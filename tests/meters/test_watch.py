"""The bound a watch keeps is never below the real usage (notifications.watch).

For random stream histories up to the evaluation instant T and a random batch after it (or,
for a live feed's batches in flight, with events stamped before T too), the watch written at
T and widened by the batch must bound the usage recomputed from every event, at every
instant from the batch's arrival on (time alone moving). Pure: no database.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from quotameter.catalog.model import validate_catalog
from quotameter.meters.model import (
    GaugeChange,
    Simple,
    StreamPoint,
    duration_usage,
    gauge_usage,
)
from quotameter.meters.spans import StreamEvent, replay
from quotameter.notifications import watch as watching
from quotameter.notifications.watch import Watch

MIN = 60_000_000
SPEC = validate_catalog(
    {
        "meters": {
            "media": {
                "event_type": "m",
                "aggregation": "duration",
                "stream_property": "stream",
                "merge_property": "user",
                "rounding": {"unit_seconds": 60, "mode": "ceil"},
                "idle_timeout": 600,
                "unit": "minute",
            },
            "raw": {
                "event_type": "m",
                "aggregation": "duration",
                "stream_property": "stream",
                "unit": "second",
            },
            "hours": {
                "event_type": "m",
                "aggregation": "duration",
                "stream_property": "stream",
                "rounding": {"unit_seconds": 60, "mode": "ceil"},
                "unit": "hour",
            },
            "level": {"event_type": "g", "aggregation": "gauge", "delta_property": "d"},
            "n": {"event_type": "x", "aggregation": "count"},
        },
        "customers": {},
        "plans": {},
    }
)
LO, HI = 0, 10_000 * MIN
T = 100 * MIN

instant = st.integers(0, 30 * MIN) | st.integers(0, 30).map(lambda m: m * MIN)


@st.composite
def point(draw: st.DrawFn, lo: int, hi: int) -> StreamPoint:
    user = draw(st.sampled_from(["u1", "u2"]))
    stream = f"{user}\x01{draw(st.sampled_from(['mic', 'cam']))}"
    t = draw(st.integers(lo, hi))
    if draw(st.integers(0, 7)) == 0:
        return StreamPoint(stream, user, t, "span", f"k{draw(st.integers())}", t + draw(instant))
    return StreamPoint(
        stream,
        user,
        t,
        draw(st.sampled_from(["start", "start", "stop", "heartbeat"])),
        f"k{draw(st.integers())}",
    )


def open_streams(points: list[StreamPoint], idle: int | None) -> int:
    by_stream: dict[str, list[StreamPoint]] = {}
    for p in points:
        if p.action != "span":
            by_stream.setdefault(p.stream_key, []).append(p)
    return sum(
        1
        for pts in by_stream.values()
        for s in replay([StreamEvent(p.t, p.action, p.order_key) for p in pts], idle)
        if s.end is None
    )  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(meter=st.sampled_from(["media", "raw", "hours"]), data=st.data())
def test_a_widened_watch_bounds_stream_usage(meter: str, data: st.DataObject) -> None:
    _bounded(meter, data, T)


@settings(max_examples=600, deadline=None)
@given(meter=st.sampled_from(["media", "raw", "hours"]), data=st.data())
def test_stream_events_stamped_before_the_evaluation_widen_a_bound_that_holds(
    meter: str, data: st.DataObject
) -> None:
    # Events a moment before T (as a live feed's batches in flight have) or long before it.
    _bounded(meter, data, data.draw(st.sampled_from([T - 2 * MIN, T - MIN // 2, LO])))


def _bounded(meter: str, data: st.DataObject, earliest: int) -> None:
    """A watch written at T from the events stamped up to T, widened by a batch stamped from
    `earliest` up to its arrival, bounds the usage of all of them from its arrival on."""
    spec = SPEC.meters[meter]
    before = data.draw(st.lists(point(LO, T), max_size=12))
    before = [
        p for p in before if p.action != "span" or p.end <= T
    ]  # ends after T: stamped ahead, no watch
    received = T + data.draw(instant)
    batch = data.draw(st.lists(point(earliest, received), max_size=8))
    batch = [
        p
        if p.action != "span"
        else StreamPoint(p.stream_key, p.merge_key, p.t, "span", p.order_key, min(p.end, received))  # type: ignore[type-var]
        for p in batch
    ]
    idle = spec.idle_timeout * 1_000_000 if spec.idle_timeout else None
    rate = open_streams(before, idle)
    usage_t = duration_usage(before, spec, LO, HI, T)
    w = Watch(
        meter, HI, T, usage_t + watching.slack(spec, rate), rate, None, watching.unit_us(spec)
    )
    widened = watching.widen(spec, w, batch, received)
    assert widened is not None
    for t in [
        received,
        received + 1,
        *(received + x for x in data.draw(st.lists(instant, max_size=5))),
    ]:
        assert duration_usage([*before, *batch], spec, LO, HI, t) <= widened.bound_at(t), t


@settings(max_examples=300, deadline=None)
@given(
    deltas=st.lists(st.tuples(st.integers(0, 2 * T), st.decimals(-5, 5, places=2)), max_size=12),
    counts=st.lists(st.integers(0, 2 * T), max_size=12),
    received=st.integers(T, 2 * T),
)
def test_a_widened_watch_bounds_gauges_and_counts(deltas, counts, received) -> None:  # type: ignore[no-untyped-def]
    changes = [GaugeChange(t, f"k{i}", None, d) for i, (t, d) in enumerate(deltas) if t <= received]
    old = [c for c in changes if c.t <= T]
    w = Watch("level", HI, T, gauge_usage(old, LO, T + 1)[0], 0, None, None)
    widened = watching.batch_increase(
        SPEC.meters["level"], w, [c for c in changes if c.t > T], received
    )
    assert widened is not None and gauge_usage(changes, LO, received + 1)[0] <= widened.bound_at(
        received
    )

    items = [Simple(t, f"k{i}") for i, t in enumerate(counts) if t <= received]
    w = Watch("n", HI, T, Decimal(sum(1 for i in items if i.t <= T)), 0, None, None)
    widened = watching.batch_increase(SPEC.meters["n"], w, [i for i in items if i.t > T], received)
    assert widened is not None and len(items) <= widened.bound_at(received)


def test_what_cannot_be_bounded_is_evaluated_exactly() -> None:
    w = Watch("n", HI, T, Decimal(0), 0, Decimal(5), None)
    n = SPEC.meters["n"]
    assert watching.batch_increase(n, w, [Simple(T - 1, "late")], T + 5) is None
    assert watching.batch_increase(n, w, [Simple(T + 9, "ahead")], T + 5) is None
    assert watching.batch_increase(n, w, [Simple(T + 1, "a")], HI) is None  # the period is over
    gauge = SPEC.meters["level"]
    assert (
        watching.batch_increase(gauge, w, [GaugeChange(T + 1, "s", Decimal(3), None)], T + 5)
        is None
    )
    assert watching.batch_increase(n, w, [Simple(T + 1, "a")], T + 5).bound == 1  # type: ignore[union-attr]


def test_the_due_instant_is_when_the_bound_reaches_the_goal() -> None:
    w = Watch("media", HI, T, Decimal(10), 2, Decimal(11), MIN)
    due = w.due_us()
    assert due == T + MIN // 2
    assert w.reached_by(due) and not w.reached_by(due - 1)
    assert Watch("n", HI, T, Decimal(1), 0, Decimal(2), None).due_us() is None


def test_a_wakeup_is_the_last_instant_before_the_bound_reaches_the_goal() -> None:
    """With no rounding slack, usage may reach the goal at the very instant the bound does:
    a look there would find the level reached, not crossed."""
    w = Watch("media", HI, T, Decimal(10), 2, Decimal(11), MIN)
    assert w.wakeup_us() == T + MIN // 2 - 1
    assert not w.reached_by(T + MIN // 2 - 1)


def test_growth_past_the_period_wakes_at_its_end() -> None:
    """Spans growing into the next period: it is looked at when it starts, whether or not a
    level is left in this one."""
    assert Watch("media", HI, T, Decimal(10), 1, None, MIN).wakeup_us() == HI
    assert Watch("media", HI, T, Decimal(10), 1, Decimal(10**9), MIN).wakeup_us() == HI
    assert Watch("media", HI, T, Decimal(10), 0, None, MIN).wakeup_us() is None
    assert Watch("n", HI, T, Decimal(1), 0, Decimal(2), None).wakeup_us() is None
