"""How long was Alice's microphone on: pure functions over stream events and spans.

All instants are integer microseconds since the epoch (UTC). A stream is one
mic/camera/screen (or one participant's audio) identified by its key; its events are
replayed by a small state machine into spans; spans of the same merge key (a user) are
merged, clipped to the period and to the instant asked about, and each merged part is
rounded on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Action = Literal["start", "stop", "heartbeat"]
RoundingMode = Literal["ceil", "floor", "nearest"]

US = 1_000_000

# At one instant a stop is applied before a start, so stop+start at the same moment
# continues the media without a gap rather than being ignored as a second start.
ACTION_RANK: dict[str, int] = {"stop": 0, "heartbeat": 1, "start": 2, "span": 3}


@dataclass(frozen=True, slots=True)
class StreamEvent:
    t: int
    action: Action
    order_key: str = ""

    def sort_key(self) -> tuple[int, int, str]:
        return (self.t, ACTION_RANK[self.action], self.order_key)


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int | None  # None: still open
    last: int  # the stream's last event inside the span (idle timeout is counted from it)


def replay(
    events: Iterable[StreamEvent], idle_timeout_us: int | None, open_span: Span | None = None
) -> list[Span]:
    """Spans of one stream, from a closed stream (or from `open_span`, still open).

    - start opens the stream (a start while open only counts as a sign of life);
    - heartbeat keeps an open stream alive; stop closes it;
    - with an idle timeout, a stream that had no event for that long is closed at its last
      event, and what follows is ignored until the next start;
    - heartbeat and stop of a closed stream are ignored.
    Zero-length spans are dropped: they count for nothing.
    """
    spans: list[Span] = []
    open_start: int | None = open_span.start if open_span else None
    last = open_span.last if open_span else 0
    for ev in sorted(events, key=StreamEvent.sort_key):
        if (
            open_start is not None
            and idle_timeout_us is not None
            and ev.t - last >= idle_timeout_us
        ):
            _close(spans, open_start, last)
            open_start = None
        if ev.action == "start":
            if open_start is None:
                open_start = ev.t
            last = ev.t
        elif open_start is None:
            continue
        elif ev.action == "heartbeat":
            last = ev.t
        else:
            _close(spans, open_start, ev.t)
            open_start = None
    if open_start is not None:
        spans.append(Span(open_start, None, last))
    return spans


def _close(spans: list[Span], start: int, end: int) -> None:
    if end > start:
        spans.append(Span(start, end, end))


def extent(span: Span, at: int, idle_timeout_us: int | None) -> tuple[int, int] | None:
    """The interval a span covers as seen at instant `at` (None if nothing yet)."""
    if span.start >= at:
        return None
    if span.end is not None:
        end = span.end
    elif idle_timeout_us is not None and at - span.last >= idle_timeout_us:
        end = span.last
    else:
        end = at
    end = min(end, at)
    return (span.start, end) if end > span.start else None


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of intervals; touching intervals join (media switched over without a gap)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def round_length(length_us: int, unit_us: int | None, mode: RoundingMode = "ceil") -> int:
    if unit_us is None or length_us <= 0:
        return max(length_us, 0)
    if mode == "ceil":
        return -(-length_us // unit_us) * unit_us
    if mode == "floor":
        return length_us // unit_us * unit_us
    return (length_us + unit_us // 2) // unit_us * unit_us


def clipped_length(interval: tuple[int, int], lo: int, hi: int) -> int:
    return max(0, min(interval[1], hi) - max(interval[0], lo))


def usage_us(
    spans_by_merge_key: dict[str, list[Span]],
    lo: int,
    hi: int,
    at: int,
    *,
    idle_timeout_us: int | None = None,
    unit_us: int | None = None,
    mode: RoundingMode = "ceil",
) -> int:
    """Total rounded time in [lo, hi) as seen at `at`: the whole duration arithmetic."""
    total = 0
    for spans in spans_by_merge_key.values():
        intervals = [iv for s in spans if (iv := extent(s, at, idle_timeout_us)) is not None]
        for merged in merge(intervals):
            total += round_length(clipped_length(merged, lo, hi), unit_us, mode)
    return total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A duration meter's state for one customer and window [lo, hi), read once at `taken`:
    its usage at every instant from `taken` on while no event arrives (time alone moving).

    Only what time can change is kept as spans: the open streams (growing until stopped or
    idle) and the closed merged spans an open stream may join, or that end after `taken`
    (clipped at the instant asked about). Every other closed merged span is fixed and summed,
    rounded, in `fixed_us`. `usage_us(at)` repeats the arithmetic of the meter's read for
    those spans, so it equals that read at every `at >= taken`."""

    lo: int
    hi: int
    taken: int
    fixed_us: int
    closed: dict[str, list[tuple[int, int]]]  # merge key -> closed merged spans (disjoint)
    open: dict[str, list[Span]]  # merge key -> open spans starting before hi
    idle_timeout_us: int | None
    unit_us: int | None
    mode: RoundingMode

    def growing(self) -> int:
        """How many spans may grow after `taken` (open streams, closed spans ending later):
        the usage grows by at most that many microseconds per microsecond."""
        return sum(len(spans) for spans in self.open.values()) + sum(
            1 for spans in self.closed.values() for _, end in spans if end > self.taken
        )

    def usage_us(self, at: int) -> int:
        """Total rounded time in [lo, hi) as seen at `at` (`at >= taken`)."""
        h = min(self.hi, at)
        if h <= self.lo:
            return 0
        total = self.fixed_us
        for key in self.closed.keys() | self.open.keys():
            ivs = [
                iv
                for s in self.open.get(key, ())
                if (iv := extent(s, at, self.idle_timeout_us)) is not None
            ]
            closed = self.closed.get(key, [])
            if ivs:  # as the read does: closed spans within the extents' reach join them
                a, b = min(s for s, _ in ivs), max(e for _, e in ivs)
                joined = [c for c in closed if c[1] >= a and c[0] <= b]
                rest = [c for c in closed if not (c[1] >= a and c[0] <= b)]
                parts = [*merge([*ivs, *joined]), *rest]
            else:
                parts = closed
            total += sum(
                round_length(clipped_length(p, self.lo, h), self.unit_us, self.mode) for p in parts
            )
        return total
