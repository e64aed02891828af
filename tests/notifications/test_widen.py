"""A batch in flight while its customer was evaluated still widens the watch (notifications.watch).

Counts, sums, unique values and gauge deltas add the same whenever they are stamped: one
stamped before the evaluation instant T, or a batch received before T, is bounded as if at T.
A media stream's event stamped before T is bounded by what it can change from its instant on;
anything stamped ahead of its arrival is not bounded.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from quotameter.catalog.model import validate_catalog
from quotameter.meters.model import GaugeChange, Simple, StreamPoint, duration_usage, gauge_usage
from quotameter.notifications import watch as watching
from quotameter.notifications.watch import Watch

SPEC = validate_catalog(
    {
        "meters": {
            "n": {"event_type": "x", "aggregation": "count"},
            "level": {"event_type": "g", "aggregation": "gauge", "delta_property": "d"},
            "media": {
                "event_type": "m",
                "aggregation": "duration",
                "stream_property": "s",
                "unit": "second",
            },
            "rounded": {
                "event_type": "m",
                "aggregation": "duration",
                "stream_property": "s",
                "merge_property": "user",
                "rounding": {"unit_seconds": 60, "mode": "ceil"},
                "unit": "minute",
            },
        },
        "customers": {},
        "plans": {},
    }
)
LO, HI, T = 0, 10_000_000, 1_000_000


@given(
    counts=st.lists(st.integers(LO, 2 * T), max_size=12),
    received=st.integers(T // 2, 2 * T),
)
def test_late_counts_widen_the_bound(counts: list[int], received: int) -> None:
    stamped = [t for t in counts if t <= received]
    old = [t for t in stamped if t <= T // 2]  # what the evaluation at T had seen
    w = Watch("n", HI, T, Decimal(len(old)), 0, None, None)
    batch = [Simple(t, f"k{i}") for i, t in enumerate(stamped) if t > T // 2]
    widened = watching.widen(SPEC.meters["n"], w, batch, received)
    assert widened is not None and len(stamped) <= widened.bound_at(max(received, T))


@given(
    deltas=st.lists(st.tuples(st.integers(LO, 2 * T), st.decimals(-5, 5, places=2)), max_size=12),
    received=st.integers(T, 2 * T),
)
def test_late_gauge_deltas_widen_the_bound(deltas, received) -> None:  # type: ignore[no-untyped-def]
    changes = [GaugeChange(t, f"k{i}", None, d) for i, (t, d) in enumerate(deltas) if t <= received]
    # The evaluation at T had seen some of those stamped before it; the others arrive now.
    old = [c for c in changes[::2] if c.t <= T]
    batch = [c for c in changes if c not in old]
    w = Watch("level", HI, T, gauge_usage(old, LO, T + 1)[0], 0, None, None)
    widened = watching.widen(SPEC.meters["level"], w, batch, received)
    assert widened is not None
    assert gauge_usage(changes, LO, received + 1)[0] <= widened.bound_at(received)


def test_what_stays_unbounded() -> None:
    w = Watch("n", HI, T, Decimal(0), 0, Decimal(5), None)
    n = SPEC.meters["n"]
    assert watching.widen(n, w, [Simple(T - 1, "late")], T + 5).bound == 1  # type: ignore[union-attr]
    assert watching.widen(n, w, [Simple(T - 9, "before")], T - 5).bound == 1  # type: ignore[union-attr]
    assert watching.widen(n, w, [Simple(T - 1, "ahead")], T - 5) is None
    assert watching.widen(n, w, [Simple(T + 9, "ahead")], T + 5) is None
    media = Watch("media", HI, T, Decimal(0), 0, Decimal(5), 1_000_000)
    ahead = StreamPoint("s", "s", T + 9, "start", "k")
    assert watching.widen(SPEC.meters["media"], media, [ahead], T + 5) is None


def test_a_late_stream_event_adds_what_it_can_change_from_its_instant_on() -> None:
    """A start or heartbeat stamped s before T may add [s, T) and one more growing stream; a
    stop only takes time away, but cutting a merged span in two rounds up once more."""
    spec = SPEC.meters["rounded"]
    w = Watch("rounded", HI, T, Decimal(3), 2, Decimal(50), 60_000_000)
    for action in ("start", "heartbeat"):
        late = StreamPoint("s", "s", T - 90_000_000, action, "k")
        widened = watching.widen(spec, w, [late], T + 5)
        assert widened is not None
        assert (widened.bound, widened.rate) == (Decimal(3) + Decimal("1.5") + 1, 3)
    stop = StreamPoint("s", "s", T - 90_000_000, "stop", "k")
    assert watching.widen(spec, w, [stop], T + 5) == w.widened(Decimal(4), 2)


def test_a_late_stop_that_cuts_a_merged_span_in_two_stays_bounded() -> None:
    """[0, 120.3 s) rounds up to 3 minutes; cut by a stop at 60.1 s and opened again at 60.2 s
    (the stored start a sign of life before), it is 60.1 s and 60.1 s: 2 + 2 minutes."""
    spec = SPEC.meters["rounded"]
    s = 1_000_000
    stored = [
        StreamPoint("a", "u", 0, "start", "k1"),
        StreamPoint("a", "u", 60_200_000, "start", "k2"),
        StreamPoint("a", "u", 120_300_000, "stop", "k3"),
    ]
    t0 = 200 * s
    end = 1000 * s  # the period's end
    before = duration_usage(stored, spec, LO, end, t0)
    assert before == 3
    w = Watch("rounded", end, t0, before + watching.slack(spec, 0), 0, None, 60_000_000)
    stop = StreamPoint("a", "u", 60_100_000, "stop", "k4")
    widened = watching.widen(spec, w, [stop], t0 + 5)
    assert widened is not None
    assert duration_usage([*stored, stop], spec, LO, end, t0 + 5) == 4 <= widened.bound
