"""Duration arithmetic (`quotameter.meters.spans`) against a brute-force oracle.

The oracle shares no code with spans.py. Every instant in these tests is a whole second,
so time can be cut into seconds exactly: a stream is simulated second by second ("is it on
during second k?") by a literal reading of the rules in SPEC.md (Meter → `duration`), the
on-seconds of the streams of one merge key are united, and each maximal run of consecutive
on-seconds inside [lo, hi) and before `at` is rounded on its own and summed.

The oracle, like `replay`, knows every event it is given, also those after `at`: an event
after `at` that reveals an idle gap closes the stream at its last event before the gap.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st

from quotameter.meters.spans import Span, StreamEvent, extent, merge, replay, round_length, usage_us

US = 1_000_000
MIN = 60 * US
T0 = 1_775_001_600  # 2026-04-01T00:00:00Z, in seconds: a calendar-month boundary
HORIZON = 2 * 3600  # events fall within two hours of T0


def t(seconds: int) -> int:
    """The instant `seconds` after T0, in microseconds."""
    return (T0 + seconds) * US


def ev(seconds: int, action: str, order_key: str = "") -> StreamEvent:
    return StreamEvent(t(seconds), action, order_key)  # type: ignore[arg-type]


# --- the oracle ------------------------------------------------------------------------------

# Literal reading of "at one instant a stop comes before a heartbeat, before a start".
SAME_INSTANT_ORDER = ["stop", "heartbeat", "start"]


def stream_on_seconds(events: list[tuple[int, str]], idle_s: int | None, at_s: int) -> bytearray:
    """on[k] == 1 iff the stream is on during second k, as known from `events` and at `at_s`.

    Time is walked one instant at a time up to `at_s` (time passing up to the moment asked
    about can close an idle stream) or up to the stream's last event, if later.
    """
    horizon = max([at_s, *(second for second, _ in events)])
    actions_at: dict[int, list[str]] = defaultdict(list)
    for second, action in events:
        actions_at[second].append(action)
    on = bytearray(horizon + 1)
    is_open = False
    last_sign_of_life = 0
    for now in range(horizon + 1):
        if is_open and idle_s is not None and now - last_sign_of_life >= idle_s:
            # No event for idle_s: the stream was closed at its last event, retroactively.
            on[last_sign_of_life:now] = bytes(now - last_sign_of_life)
            is_open = False
        for action in sorted(actions_at.get(now, []), key=SAME_INSTANT_ORDER.index):
            if action == "start":
                is_open = True  # opens a closed stream; a sign of life for an open one
                last_sign_of_life = now
            elif action == "heartbeat" and is_open:
                last_sign_of_life = now
            elif action == "stop":
                is_open = False  # a no-op when already closed
        if is_open:
            on[now] = 1
    return on


def round_seconds(length: int, unit: int | None, mode: str) -> int:
    if unit is None:
        return length
    units = Fraction(length, unit)
    if mode == "ceil":
        return math.ceil(units) * unit
    if mode == "floor":
        return math.floor(units) * unit
    return math.floor(units + Fraction(1, 2)) * unit  # nearest, a half unit rounds up


@dataclass(frozen=True)
class Scenario:
    streams: list[
        tuple[str, list[tuple[int, str, str]]]
    ]  # (merge key, [(second, action, order key)])
    completed: list[tuple[str, int, int]]  # (merge key, start, end): one-event completed spans
    idle_s: int | None
    lo: int
    hi: int
    at: int
    unit: int | None
    mode: str


def oracle_seconds(sc: Scenario) -> int:
    size = (
        max(
            [
                sc.at,
                *(s for _, evs in sc.streams for s, _, _ in evs),
                *(e for _, _, e in sc.completed),
            ]
        )
        + 1
    )
    on_by_key: dict[str, bytearray] = defaultdict(lambda: bytearray(size))
    for key, evs in sc.streams:
        on = stream_on_seconds([(s, a) for s, a, _ in evs], sc.idle_s, sc.at)
        united = on_by_key[key]
        for k, flag in enumerate(on):
            if flag:
                united[k] = 1
    for key, start, end in sc.completed:
        united = on_by_key[key]
        for k in range(start, end):
            united[k] = 1
    window = range(max(sc.lo, 0), min(sc.hi, sc.at, size))
    total = 0
    for united in on_by_key.values():
        run = 0
        for k in window:
            if united[k]:
                run += 1
            else:
                total += round_seconds(run, sc.unit, sc.mode) if run else 0
                run = 0
        total += round_seconds(run, sc.unit, sc.mode) if run else 0
    return total


def usage_from_spans_py(sc: Scenario) -> int:
    idle_us = sc.idle_s * US if sc.idle_s is not None else None
    spans: dict[str, list[Span]] = defaultdict(list)
    for key, evs in sc.streams:
        spans[key].extend(replay([ev(s, a, k) for s, a, k in evs], idle_us))
    for key, start, end in sc.completed:
        spans[key].append(Span(t(start), t(end), t(end)))
    return usage_us(
        dict(spans),
        t(sc.lo),
        t(sc.hi),
        t(sc.at),
        idle_timeout_us=idle_us,
        unit_us=sc.unit * US if sc.unit is not None else None,
        mode=sc.mode,
    )  # type: ignore[arg-type]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # Events sit on a grid of `step` seconds. A short grid makes exact ties common: events
    # at one instant, gaps of exactly the idle timeout, spans touching each other or ending
    # on lo, hi or at, runs of exactly half a rounding unit. The full grid spreads them over
    # two hours.
    step = draw(st.sampled_from([1, 7, 60, 300, 600]))
    slots = draw(st.integers(2, 12) | st.just(HORIZON // step))
    end = slots * step
    instant = st.integers(0, slots).map(lambda k: k * step)
    point = st.one_of(instant, instant, st.integers(0, end + step))
    keys = ["u1", "u2", "u3"][: draw(st.integers(1, 3))]
    action = st.sampled_from(["start", "start", "start", "stop", "heartbeat", "heartbeat"])
    stream = st.tuples(
        st.sampled_from(keys),
        st.lists(
            st.tuples(instant, action, st.sampled_from(["", "a", "b"])), min_size=1, max_size=12
        ),
    )
    streams = draw(st.lists(stream, min_size=1, max_size=5))
    completed = draw(
        st.lists(
            st.tuples(st.sampled_from(keys), instant, instant).filter(lambda c: c[1] < c[2]),
            max_size=2,
        )
    )
    idle_s = draw(st.none() | st.integers(1, slots).map(lambda k: k * step) | st.integers(1, 3600))
    lo = draw(st.just(0) | point)
    hi = draw(st.integers(end, end + 3600) | point)
    # `at` after everything, on the grid, or exactly one idle timeout after an event.
    at_choices = [
        st.integers(end, end + 3600),
        st.integers(0, slots).map(lambda k: (slots - k) * step),
        point,
    ]
    if idle_s is not None:
        at_choices.append(
            st.sampled_from(sorted({s + idle_s for _, evs in streams for s, _, _ in evs}))
        )
    at = draw(st.one_of(at_choices))
    if draw(
        st.sampled_from([True] * 9 + [False])
    ):  # mostly a window open before `at`; now and then an empty one
        lo, hi = min(lo, hi), max(lo, hi)
        if lo >= at:
            lo = draw(st.integers(0, max(at - 1, 0)))
    # A unit of two grid steps puts runs of an odd number of steps exactly half-way.
    unit = draw(
        st.none()
        | st.integers(1, 300)
        | st.sampled_from([u for u in (2 * step, step, 60, 120) if u <= 300])
    )
    mode = draw(st.sampled_from(["ceil", "floor", "nearest"]))
    return Scenario(streams, completed, idle_s, lo, hi, at, unit, mode)


def _one_user(*streams: list[tuple[int, str]]) -> list[tuple[str, list[tuple[int, str, str]]]]:
    return [("u1", [(second, action, "") for second, action in evs]) for evs in streams]


@settings(max_examples=400, deadline=None)
@given(scenarios())
# Ties that random draws reach only now and then:
@example(
    Scenario(
        _one_user([(0, "start"), (30, "stop")], [(30, "start"), (60, "stop")]),
        [],
        None,
        0,
        3600,
        3600,
        60,
        "ceil",
    )
)  # two streams touching: one span
@example(
    Scenario(
        _one_user([(0, "start"), (30, "start"), (30, "stop"), (60, "stop")]),
        [],
        None,
        0,
        3600,
        3600,
        60,
        "ceil",
    )
)  # stop and start at one instant
@example(Scenario(_one_user([(0, "start"), (30, "stop")]), [], None, 0, 3600, 3600, 60, "nearest"))
@example(Scenario(_one_user([(0, "start"), (10, "heartbeat")]), [], 20, 0, 3600, 30, None, "ceil"))
def test_usage_equals_brute_force_oracle(sc: Scenario) -> None:
    assert usage_from_spans_py(sc) == oracle_seconds(sc) * US


def test_ties_as_documented_in_the_oracle_and_in_spans_py() -> None:
    # The oracle is only as good as its reading of the rules: pin both on the ties.
    def both(events: list[tuple[int, str]], idle: int | None, at: int) -> list[int]:
        oracle = [
            k for k, flag in enumerate(stream_on_seconds(events, idle, at)) if flag and k < at
        ]
        idle_us = idle * US if idle is not None else None
        extents = [
            iv
            for sp in replay([ev(s, a) for s, a in events], idle_us)
            if (iv := extent(sp, t(at), idle_us)) is not None
        ]
        spans_py = [
            k for start, end in merge(extents) for k in range(start // US - T0, end // US - T0)
        ]
        assert spans_py == oracle
        return oracle

    assert both([(2, "start"), (4, "stop"), (4, "start"), (6, "stop")], None, 10) == [2, 3, 4, 5]
    assert both([(2, "start"), (2, "stop")], None, 4) == [
        2,
        3,
    ]  # the stop comes first and finds it closed
    assert both([(2, "start"), (4, "heartbeat"), (7, "heartbeat")], 3, 10) == [2, 3]
    assert both([(2, "start"), (4, "heartbeat")], 3, 7) == [2, 3]  # time alone closes it at `at`
    assert both([(2, "start"), (4, "heartbeat")], 3, 6) == [2, 3, 4, 5]
    assert both([(1, "stop"), (1, "heartbeat"), (2, "start"), (3, "start"), (5, "stop")], 3, 9) == [
        2,
        3,
        4,
    ]
    assert both([(2, "start"), (5, "stop")], 3, 9) == []  # closed at 2 by the timeout: zero length


# --- the reference cases ---------------------------------------------------------------------

MONTH = 30 * 24 * 3600


def minutes_used(
    streams_by_user: dict[str, list[list[StreamEvent]]],
    at: int,
    *,
    lo: int = -MONTH,
    hi: int = MONTH,
    idle: int | None = None,
    unit: int | None = 60,
    mode: str = "ceil",
) -> Fraction:
    idle_us = idle * US if idle is not None else None
    spans = {
        user: [sp for evs in streams for sp in replay(evs, idle_us)]
        for user, streams in streams_by_user.items()
    }
    total = usage_us(
        spans,
        t(lo),
        t(hi),
        t(at),
        idle_timeout_us=idle_us,
        unit_us=unit * US if unit is not None else None,
        mode=mode,
    )  # type: ignore[arg-type]
    return Fraction(total, MIN)


def test_five_minutes_ten_seconds_round_up_to_six_minutes() -> None:
    mic = [ev(0, "start"), ev(310, "stop")]
    assert replay(mic, None) == [Span(t(0), t(310), t(310))]
    assert minutes_used({"u1": [mic]}, at=3600) == 6
    assert minutes_used({"u1": [mic]}, at=3600, unit=None) == Fraction(310, 60)


def test_mic_camera_and_screen_of_one_user_merge_before_rounding() -> None:
    together = [[ev(0, "start"), ev(600, "stop")] for _ in ("mic", "camera", "screen")]
    assert minutes_used({"u1": together}, at=3600) == 10
    # Mic hands over to the camera without a gap, the screen overlaps the camera: one span
    # of 10 min (rounded per stream it would be 5 + 3 + 4 = 12).
    handover = [
        [ev(0, "start"), ev(250, "stop")],
        [ev(250, "start"), ev(430, "stop")],
        [ev(400, "start"), ev(600, "stop")],
    ]
    assert minutes_used({"u1": handover}, at=3600) == 10
    # Another user's streams are not merged with u1's.
    assert minutes_used({"u1": together, "u2": [[ev(0, "start"), ev(600, "stop")]]}, at=3600) == 20


def test_span_across_a_period_boundary_is_split_and_each_part_rounded() -> None:
    # 30 s before the April boundary (T0) and 45 s after it: 1 min in March and 1 min in April.
    mic = {"u1": [[ev(-30, "start"), ev(45, "stop")]]}
    assert minutes_used(mic, at=3600, lo=-MONTH, hi=0) == 1
    assert minutes_used(mic, at=3600, lo=0, hi=MONTH) == 1
    assert minutes_used(mic, at=3600, lo=-MONTH, hi=0, unit=None) == Fraction(30, 60)
    # 30 s + 90 s split is 1 + 2 min, where the unsplit 2 min would be less.
    long = {"u1": [[ev(-30, "start"), ev(90, "stop")]]}
    assert (
        minutes_used(long, at=3600, lo=-MONTH, hi=0) + minutes_used(long, at=3600, lo=0, hi=MONTH)
        == 3
    )


def test_open_stream_accrues_up_to_the_instant_asked_about() -> None:
    mic = [ev(0, "start")]
    assert replay(mic, None) == [Span(t(0), None, t(0))]
    assert minutes_used({"u1": [mic]}, at=450, unit=None) == Fraction(450, 60)
    assert minutes_used({"u1": [mic]}, at=451, unit=None) == Fraction(451, 60)
    assert minutes_used({"u1": [mic]}, at=450) == 8
    assert minutes_used({"u1": [mic]}, at=0) == 0
    assert minutes_used({"u1": [mic]}, at=-10) == 0
    # A span stopped after `at` also counts only up to `at`.
    assert minutes_used({"u1": [[ev(0, "start"), ev(600, "stop")]]}, at=450, unit=None) == Fraction(
        450, 60
    )
    # Heartbeats keep it open under an idle timeout.
    alive = [ev(0, "start"), ev(300, "heartbeat"), ev(600, "heartbeat"), ev(900, "heartbeat")]
    assert minutes_used({"u1": [alive]}, at=1000, idle=600, unit=None) == Fraction(1000, 60)


def test_idle_timeout_closes_the_stream_at_its_last_heartbeat() -> None:
    mic = [ev(0, "start"), ev(60, "heartbeat"), ev(120, "heartbeat")]
    assert replay(mic, 300 * US) == [Span(t(0), None, t(120))]
    assert minutes_used({"u1": [mic]}, at=419, idle=300, unit=None) == Fraction(419, 60)
    assert (
        minutes_used({"u1": [mic]}, at=420, idle=300, unit=None) == 2
    )  # exactly 300 s without an event
    assert minutes_used({"u1": [mic]}, at=5000, idle=300, unit=None) == 2
    assert extent(Span(t(0), None, t(120)), t(420), 300 * US) == (t(0), t(120))
    # A heartbeat exactly 300 s after the last one comes too late: ignored, the stream is
    # closed at 120 s; a later start opens a new span.
    late = [*mic, ev(420, "heartbeat"), ev(500, "start"), ev(530, "stop")]
    assert replay(late, 300 * US) == [Span(t(0), t(120), t(120)), Span(t(500), t(530), t(530))]
    assert minutes_used({"u1": [late]}, at=5000, idle=300) == 3
    # One second earlier it is in time.
    assert replay([*mic, ev(419, "heartbeat")], 300 * US) == [Span(t(0), None, t(419))]


def test_stop_and_start_at_the_same_instant_make_one_span() -> None:
    # Given in the "wrong" order: the stop is applied first at one instant.
    mic = [ev(0, "start"), ev(70, "start"), ev(70, "stop"), ev(100, "stop")]
    assert replay(mic, None) == [Span(t(0), t(70), t(70)), Span(t(70), t(100), t(100))]
    assert minutes_used({"u1": [mic]}, at=3600) == 2  # 100 s → 2 min, not 70 s + 30 s → 3 min


def test_second_start_while_open_is_a_sign_of_life() -> None:
    mic = [ev(0, "start"), ev(250, "start")]
    assert replay(mic, 300 * US) == [Span(t(0), None, t(250))]
    assert minutes_used({"u1": [mic]}, at=500, idle=300, unit=None) == Fraction(500, 60)
    assert minutes_used({"u1": [mic]}, at=550, idle=300, unit=None) == Fraction(250, 60)


def test_heartbeat_and_stop_of_a_closed_stream_are_ignored() -> None:
    mic = [
        ev(10, "heartbeat"),
        ev(20, "stop"),
        ev(30, "start"),
        ev(60, "stop"),
        ev(70, "stop"),
        ev(80, "heartbeat"),
    ]
    assert replay(mic, None) == [Span(t(30), t(60), t(60))]
    assert minutes_used({"u1": [mic]}, at=3600, unit=None) == Fraction(30, 60)


def test_zero_length_spans_count_for_nothing() -> None:
    # Opened, then silent for the whole idle timeout: closed at its start.
    mic = [ev(0, "start"), ev(60, "heartbeat")]
    assert replay(mic, 60 * US) == []
    assert minutes_used({"u1": [mic]}, at=3600, idle=60) == 0  # not rounded up to a minute
    assert minutes_used({"u1": [[ev(0, "start")]]}, at=3600, idle=60) == 0


def test_merge_is_invariant_to_input_order() -> None:
    intervals = [(0, 10), (10, 20), (5, 7), (30, 40), (35, 50), (60, 61), (21, 25)]
    expected = [(0, 20), (21, 25), (30, 50), (60, 61)]
    for order in itertools.permutations(intervals):
        assert merge(order) == expected


def test_rounding_modes() -> None:
    five_ten = 310 * US
    assert round_length(five_ten, MIN, "ceil") == 6 * MIN
    assert round_length(five_ten, MIN, "floor") == 5 * MIN
    assert round_length(five_ten, MIN, "nearest") == 5 * MIN
    assert round_length(340 * US, MIN, "nearest") == 6 * MIN
    assert round_length(330 * US, MIN, "nearest") == 6 * MIN  # half a unit rounds up
    assert round_length(329 * US, MIN, "nearest") == 5 * MIN
    assert round_length(300 * US, MIN, "ceil") == 5 * MIN
    assert round_length(300 * US + 1, MIN, "ceil") == 6 * MIN
    assert round_length(five_ten, None, "ceil") == five_ten
    assert round_length(0, MIN, "ceil") == 0
    # Each merged span is rounded on its own, also when rounding down.
    two_spans = [[ev(0, "start"), ev(50, "stop")], [ev(100, "start"), ev(230, "stop")]]
    assert minutes_used({"u1": two_spans}, at=3600, mode="floor") == 2  # 0 + 2 min
    assert minutes_used({"u1": two_spans}, at=3600, mode="nearest") == 3  # 1 + 2 min
    assert minutes_used({"u1": two_spans}, at=3600, mode="ceil") == 4  # 1 + 3 min


# --- merge ---------------------------------------------------------------------------------------

interval = st.tuples(st.integers(0, 60), st.integers(1, 20)).map(lambda p: (p[0], p[0] + p[1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(interval, max_size=12))
def test_merge_is_sorted_disjoint_non_touching_and_covers_the_union(
    intervals: list[tuple[int, int]],
) -> None:
    out = merge(intervals)
    assert all(start < end for start, end in out)
    assert all(
        a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(out)
    )  # sorted, gaps between
    for x in range(-1, 82):
        assert any(s <= x < e for s, e in intervals) == any(s <= x < e for s, e in out), x
