"""Usage per group and calendar window: pure functions over contributions, spans and levels.

Instants are integer microseconds (UTC). A breakdown is computed over window edges
`[lo, e1, …, hi]` (`window_edges`); each (group, window index) pair with any usage is a
*cell*. The arithmetic is the meters' own (`quotameter.meters.model`, `quotameter.meters.spans`):

- count / sum / max / latest / unique_count: the meter's aggregation over the events of each
  cell (`Tally` folds them one at a time, exactly as `aggregate_simple` does over a list).
- duration: each merge key's spans are merged as for the balance; every merged span is cut
  at the window edges and each piece is rounded on its own, as the balance cuts and rounds
  at period edges.
- gauge: the highest level held in each window, counting the level carried into it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeGuard, get_args
from zoneinfo import ZoneInfo

import orjson

from quotameter.catalog.model import MeterSpec
from quotameter.meters.model import (
    Simple,
    duration_quantity,
    simple_value,
    to_unit,
    unique_value,
)
from quotameter.meters.spans import US, Span, clipped_length, extent, merge, round_length
from quotameter.periods import calendar_month

# The one place that knows how a local wall-clock time maps to an instant across DST gaps.
from quotameter.periods.model import _when_clock_reads
from quotameter.timeutil import from_us, to_us

Window = Literal["hour", "day", "month"]
WINDOWS: tuple[str, ...] = get_args(Window)


def is_window(value: str) -> TypeGuard[Window]:
    return value in WINDOWS


ZERO = Decimal(0)

Cell = tuple[str | None, int]  # (group, window index)


class TooMany(ValueError):
    """More windows or cells than one answer may hold."""


# --- windows ------------------------------------------------------------------------------


def _next_hour(t: int, tz: str) -> int:
    # The next instant the local clock reads hh:00. Offsets are whole quarter hours, so
    # stepping within the current offset finds it (a 30-minute DST shift lands on :30 once).
    local = from_us(t).astimezone(ZoneInfo(tz))
    into_hour = (local.minute * 60 + local.second) * US + local.microsecond
    return t + 3_600 * US - into_hour


def _next_day(t: int, tz: str) -> int:
    zone = ZoneInfo(tz)
    today = from_us(t).astimezone(zone).date()
    # Clocks set back over midnight can repeat the end of a day after the next has begun.
    for ahead in (1, 2):
        edge = to_us(
            _when_clock_reads(datetime.combine(today + timedelta(days=ahead), time()), zone)
        )
        if edge > t:
            return edge
    raise AssertionError("a local day is shorter than two days")


def _next_month(t: int, tz: str) -> int:
    return to_us(calendar_month(from_us(t), tz).end)


_NEXT = {"hour": _next_hour, "day": _next_day, "month": _next_month}


def window_edges(window: Window | None, lo: int, hi: int, tz: str, limit: int) -> list[int]:
    """`[lo, e1, …, hi]`: the calendar hours, days or months of zone `tz` that cover
    `[lo, hi)`, the first cut at `lo` and the last at `hi`; without a window (or when
    `lo == hi`), one window. TooMany when that is more than `limit` windows."""
    if window is None or lo == hi:
        return [lo, hi]
    step = _NEXT[window]
    edges = [lo]
    while edges[-1] < hi:
        if len(edges) > limit:
            raise TooMany(f"more than {limit} {window} windows")
        edges.append(min(step(edges[-1], tz), hi))
    return edges


def window_of(edges: list[int], t: int) -> int:
    """The index of the window that holds `t` (`t` at the last edge belongs to the last window)."""
    return bisect_right(edges, t, 0, len(edges) - 1) - 1


def group_value(data: Any, prop: str) -> str | None:
    """The group an event's `data[prop]` puts it in: a string as is, any other JSON value as
    its JSON text, a missing or null value as None."""
    value = data.get(prop) if isinstance(data, dict) else None
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- count / sum / max / latest / unique_count ---------------------------------------------------


class Tally:
    """One cell's aggregate, fed one contribution at a time: the value of
    `meters.model.aggregate_simple(kind, items)` without keeping the items."""

    __slots__ = ("best", "kind", "latest", "n", "total", "uniques")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.n = 0
        self.total = ZERO
        self.best: Decimal | None = None
        self.latest: tuple[tuple[int, str], Decimal] | None = None
        self.uniques: set[str] = set()

    def add(self, item: Simple) -> None:
        self.n += item.units
        kind = self.kind
        if kind == "sum":
            self.total += simple_value(item)
        elif kind == "max":
            value = simple_value(item)
            if self.best is None or value > self.best:
                self.best = value
        elif kind == "latest":
            key = (item.t, item.order_key)
            if self.latest is None or key > self.latest[0]:
                self.latest = (key, simple_value(item))
        elif kind == "unique_count":
            self.uniques.add(unique_value(item))

    def value(self) -> Decimal:
        kind = self.kind
        if kind == "count":
            return Decimal(self.n)
        if kind == "sum":
            return self.total
        if kind == "max":
            return ZERO if self.best is None else self.best
        if kind == "latest":
            return ZERO if self.latest is None else self.latest[1]
        if kind == "unique_count":
            return Decimal(len(self.uniques))
        raise ValueError(f"not a simple aggregation: {kind}")


def simple_breakdown(
    kind: str, items: Iterable[tuple[str | None, Simple]], edges: list[int], max_cells: int
) -> tuple[dict[Cell, Decimal], Decimal]:
    """(usage per cell, usage over the whole range) of (group, contribution) pairs whose
    instants all lie in `[edges[0], edges[-1]]`."""
    cells: dict[Cell, Tally] = {}
    whole = Tally(kind)
    for group, item in items:
        key = (group, window_of(edges, item.t))
        tally = cells.get(key)
        if tally is None:
            if len(cells) == max_cells:
                raise TooMany(f"more than {max_cells} rows")
            tally = cells[key] = Tally(kind)
        tally.add(item)
        whole.add(item)
    return {key: tally.value() for key, tally in cells.items()}, whole.value()


# --- duration -------------------------------------------------------------------------------


def duration_breakdown(
    spans_by_merge: dict[str, list[Span]],
    spec: MeterSpec,
    edges: list[int],
    at: int,
    by_merge_key: bool,
    max_cells: int,
) -> tuple[dict[Cell, Decimal], Decimal]:
    """(usage per cell, usage over the whole range) of a duration meter as seen at `at`.

    Spans are cut at `at` and merged per merge key exactly as for the balance; each merged
    span is then cut at the window edges and every piece rounded on its own. The total is
    `meters.model.duration_quantity` over the whole range: the balance's number. Cells are
    per merge key when `by_merge_key`, else one group (None)."""
    lo, hi = edges[0], min(edges[-1], at)
    idle = spec.idle_timeout * US if spec.idle_timeout else None
    unit = spec.rounding.unit_seconds * US if spec.rounding else None
    mode = spec.rounding.mode if spec.rounding else "ceil"
    cells: dict[Cell, int] = defaultdict(int)
    for merge_key, spans in spans_by_merge.items():
        group = merge_key if by_merge_key else None
        intervals = [iv for s in spans if (iv := extent(s, at, idle)) is not None]
        for merged in merge(intervals):
            if merged[1] <= lo or merged[0] >= hi:
                continue
            i = window_of(edges, max(merged[0], lo))
            while i < len(edges) - 1 and edges[i] < min(merged[1], hi):
                key = (group, i)
                if key not in cells and len(cells) == max_cells:
                    raise TooMany(f"more than {max_cells} rows")
                cells[key] += round_length(
                    clipped_length(merged, edges[i], min(edges[i + 1], hi)), unit, mode
                )
                i += 1
    total = duration_quantity(spans_by_merge, spec, edges[0], edges[-1], at)
    return {key: to_unit(us, spec.unit) for key, us in cells.items()}, total


# --- gauge --------------------------------------------------------------------------------


def gauge_windows(
    carried: Decimal, levels: Iterable[tuple[int, Decimal]], edges: list[int]
) -> list[Decimal]:
    """The highest level held in each window, counting the level carried into it
    (`meters.model.gauge_usage` per window). `levels`: (instant, level after the change) in
    event order, all in `[edges[0], edges[-1]]`; `carried`: the level before `edges[0]`."""
    highs: list[Decimal] = []
    level = high = carried
    for t, after in levels:
        w = window_of(edges, t)
        while len(highs) < w:
            highs.append(high)
            high = level
        level = after
        high = max(high, level)
    while len(highs) < len(edges) - 1:
        highs.append(high)
        high = level
    return highs
