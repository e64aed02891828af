"""Usage reports: one feature's usage over a range, per group and per calendar window.

How the rows relate to the balance's `usage`:
- `total` is the meter's quantity over the whole range `[from, to)` as seen now, computed
  with the balance's own arithmetic: when the range is a whole period (the default: the
  current period, up to now) it is the balance's `usage` for that period.
- count, sum: the rows add up to `total`. max: `total` is the highest row; latest: the row of
  the last window with events. unique_count: a value seen in several rows counts in each, so
  the rows may add up to more than `total`. gauge: each row is the highest level held in its
  window, counting the level carried into it; `total` is the highest row.
- duration: spans are merged per merge key (e.g. per user) as for the balance, so without
  windows the rows add up to `total` exactly. With windows, every merged span is cut at the
  window edges and each piece is rounded on its own, as the spec cuts and rounds at period
  edges: with rounding, the rows can add up to more than `total` (ceil: a span from 23:59:30
  to 00:00:30 is one minute in the month, one minute on each day) — or less (floor).

Durations are read from the spans the meter keeps (those the balance reads: every stream's
spans, open and closed, replayed from all its events, so a stream that started before `from`
counts from `from`); the other kinds from the raw events of the range, a page at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
from sqlalchemy import Connection

from quotameter.catalog.model import EntitlementSpec, MeterSpec
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers.service import CustomerView
from quotameter.entitlements.service import entitlement_of, period_of
from quotameter.errors import Invalid
from quotameter.events import service as event_log
from quotameter.meters import service as meters
from quotameter.meters.model import Simple
from quotameter.meters.service import SIMPLE, interpret_row
from quotameter.meters.spans import Span
from quotameter.timeutil import EPOCH, from_us, rfc3339, to_us
from quotameter.usage.model import (
    ZERO,
    Cell,
    TooMany,
    Window,
    duration_breakdown,
    gauge_windows,
    group_value,
    simple_breakdown,
    window_edges,
)

MAX_WINDOWS = 93 * 24  # 93 days of hours (any three months), about six years of days
MAX_ROWS = 50_000
ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class UsageQuery:
    feature: str | None
    group_by: str | None = None
    window: Window | None = None
    start: datetime | None = None  # `from`
    end: datetime | None = None  # `to`


@dataclass(frozen=True)
class Row:
    group: str | None
    start: datetime
    end: datetime
    usage: Decimal


@dataclass(frozen=True)
class Report:
    customer: str
    feature: str
    meter: str
    unit: str
    start: datetime
    end: datetime
    group_by: str | None
    window: Window | None
    total: Decimal
    rows: list[Row]

    def as_dict(self) -> dict[str, object]:
        return {
            "customer": self.customer,
            "feature": self.feature,
            "meter": self.meter,
            "unit": self.unit,
            "from": self.start,
            "to": self.end,
            "group_by": self.group_by,
            "window": self.window,
            "total": self.total,
            "rows": [
                {"group": r.group, "window_start": r.start, "window_end": r.end, "usage": r.usage}
                for r in self.rows
            ],
        }


def report(ctx: Context, customer: str, query: UsageQuery, now: datetime) -> Report:
    """The feature of the customer's current plan, broken down over `[from, to)`; `to` is cut
    at `now` (open streams accrue up to now; events stamped at `now` count, as in the balance).
    Defaults: `to` now, `from` the start of the feature's period that holds `to`."""
    conn, catalog = ctx.conn, ctx.catalog
    now_us = to_us(now)
    view = customers.view(ctx, customer, now_us)
    if not query.feature:
        features = ", ".join(sorted(view.plan.entitlements)) or "none"
        raise Invalid(
            f"feature: required, a feature of plan {view.plan_name!r} (it has: {features})"
        )
    ent = entitlement_of(view, query.feature)
    spec = catalog.spec.meters[ent.meter]
    _check_group_by(spec, ent.meter, query.group_by)
    lo, hi = _range(view, ent, query, now)
    shown_end = min(hi, now_us)
    # Where `to` is cut at now, events stamped at `now` count, as in the balance (they fall in
    # the last window); an explicit `to` in the past is exclusive.
    events_end = now_us + 1 if query.end is None or hi > now_us else hi
    try:
        edges = window_edges(query.window, lo, shown_end, view.spec.timezone, MAX_WINDOWS)
    except TooMany:
        raise Invalid(
            f"window: {query.window} windows from {rfc3339(from_us(lo))} to "
            f"{rfc3339(from_us(shown_end))} "
            f"are more than {MAX_WINDOWS} (93 days of hours); narrow from/to or use a longer window"
        ) from None
    try:
        cells, total = _breakdown(
            conn, spec, ent.meter, customer, query.group_by, edges, now_us, events_end
        )
    except TooMany:
        raise Invalid(
            f"group_by: more than {MAX_ROWS} rows of {query.group_by!r}"
            f"{f' per {query.window}' if query.window else ''}; narrow from/to or use a longer "
            "window"
        ) from None
    return Report(
        customer,
        query.feature,
        ent.meter,
        spec.unit,
        from_us(lo),
        from_us(shown_end),
        query.group_by,
        query.window,
        total,
        _rows(cells, edges, shown_end, dense=query.group_by is None),
    )


def _check_group_by(spec: MeterSpec, meter: str, group_by: str | None) -> None:
    if group_by is None:
        return
    if spec.aggregation == "gauge":
        raise Invalid(
            f"group_by: meter {meter!r} is a gauge, one level for the whole customer; "
            f"it cannot be grouped (got {group_by!r})"
        )
    if spec.aggregation == "duration":
        # Rounding applies to the spans merged per merge key: only that key splits the usage
        # into parts that add up to the whole.
        key = spec.merge_property or spec.stream_property
        if group_by != key:
            how = (
                f"merges the spans of each {key!r} before rounding"
                if spec.merge_property
                else f"rounds the spans of each {key!r}"
            )
            raise Invalid(
                f"group_by: meter {meter!r} {how}, so its usage is grouped by {key!r} only "
                f"(got {group_by!r})"
            )


def _range(
    view: CustomerView, ent: EntitlementSpec, query: UsageQuery, now: datetime
) -> tuple[int, int]:
    """`[from, to)` as asked, in microseconds; `to` not yet cut at now."""
    if query.end is not None and query.end <= EPOCH:
        raise Invalid(f"to: must be after {rfc3339(EPOCH)} (no event is before)")
    if query.start is not None:
        start = query.start
    else:
        last = now if query.end is None or query.end > now else query.end - ONE_US
        start = period_of(view, ent, last).start
    if start < EPOCH:
        raise Invalid(f"from: must not be before {rfc3339(EPOCH)} (no event is)")
    if query.end is not None and start >= query.end:
        raise Invalid(
            f"from: must be before to ({rfc3339(start)} is not before {rfc3339(query.end)})"
        )
    if start > now:
        raise Invalid(
            f"from: {rfc3339(start)} is after now ({rfc3339(now)}); usage is known up to now"
        )
    return to_us(start), to_us(query.end if query.end is not None else now)


def _breakdown(
    conn: Connection,
    spec: MeterSpec,
    meter: str,
    customer: str,
    group_by: str | None,
    edges: list[int],
    now_us: int,
    events_end: int,
) -> tuple[dict[Cell, Decimal], Decimal]:
    lo, end = edges[0], events_end
    kind = spec.aggregation
    if kind == "duration":
        spans: dict[str, list[Span]] = defaultdict(list)
        for row in meters.spans_overlapping(conn, meter, customer, lo, edges[-1]):
            spans[row.merge_key].append(Span(row.start_us, row.end_us, row.last_us))
        return duration_breakdown(spans, spec, edges, now_us, group_by is not None, MAX_ROWS)
    if kind == "gauge":
        highs = gauge_windows(
            meters.gauge_level_before(conn, meter, customer, lo),
            meters.gauge_levels_between(conn, meter, customer, lo, end),
            edges,
        )
        return {(None, i): high for i, high in enumerate(highs)}, max(highs)
    assert kind in SIMPLE

    def contributions() -> Iterator[tuple[str | None, Simple]]:
        for row in event_log.events_between(conn, customer, spec.event_type, lo, end):
            item = interpret_row(spec, customer, row)  # the same reading of an event as the meter's
            if item is not None:
                assert isinstance(item, Simple)  # a simple meter's reading: see meters.model
                yield (group_value(orjson.loads(row.data), group_by) if group_by else None), item

    return simple_breakdown(kind, contributions(), edges, MAX_ROWS)


def _rows(
    cells: dict[Cell, Decimal], edges: list[int], shown_end: int, *, dense: bool
) -> list[Row]:
    """Rows in group then time order. Without groups every window has a row (0 when nothing
    was used); with groups only the windows in which that group used something."""
    if dense:
        cells = {(None, i): cells.get((None, i), ZERO) for i in range(len(edges) - 1)}
    ordered = sorted(cells.items(), key=lambda c: (c[0][0] is None, c[0][0] or "", c[0][1]))
    return [
        Row(group, from_us(edges[i]), from_us(min(edges[i + 1], shown_end)), usage)
        for (group, i), usage in ordered
    ]
