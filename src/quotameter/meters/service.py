"""Meter use cases: fold new contributions into the incremental state, and read usage.

`usage` reads the incremental state; `recompute_usage` derives the same number from the
raw events alone. They must always agree (see tests/meters/test_incremental.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeGuard, TypeVar

from sqlalchemy import Connection, Row

from quotameter.catalog.model import Catalog, MeterSpec
from quotameter.events import service as event_log
from quotameter.meters import durations
from quotameter.meters import repository as repo
from quotameter.meters.model import (
    Contribution,
    EventFacts,
    GaugeChange,
    Simple,
    StreamPoint,
    aggregate_simple,
    duration_usage,
    gauge_usage,
    interpret,
    latest_key,
    to_unit,
    unique_value,
)
from quotameter.meters.model import (
    interpret_row as interpret_row,  # the reading of a stored event, for other domains
)
from quotameter.meters.spans import US, Snapshot, Span, clipped_length, extent, merge, round_length
from quotameter.store.engine import lock_keys

SIMPLE = ("count", "sum", "max", "latest", "unique_count")

_C = TypeVar("_C", Simple, GaugeChange, StreamPoint)


def _all(items: Sequence[Contribution], kind: type[_C]) -> TypeGuard[Sequence[_C]]:
    """Whether every contribution is of this kind: true of all those made for one meter, since
    `interpret` makes one kind per aggregation."""
    return all(isinstance(i, kind) for i in items)


def contributions(
    meters: Mapping[str, MeterSpec], facts: EventFacts
) -> list[tuple[str, Contribution]]:
    """What an event adds to each of the meters of its type; EventRejected if any cannot use it."""
    return [
        (name, interpret(spec, facts))
        for name, spec in meters.items()
        if not spec.filter or spec.matches(facts.data)
    ]


def apply(
    conn: Connection,
    meters: Mapping[str, MeterSpec],
    grouped: Mapping[tuple[str, str], Sequence[Contribution]],
) -> None:
    """Fold contributions, grouped per (meter, customer), into the incremental state: a few
    statements per kind of aggregation for the whole batch, whatever its number of customers."""
    stateful = [key for key in grouped if meters[key[0]].aggregation in ("gauge", "duration")]
    lock_keys(conn, (f"{m}\x01{c}" for m, c in stateful))
    simple: list[tuple[str, str, str, Sequence[Simple]]] = []
    unique: list[tuple[str, str, Sequence[Simple]]] = []
    gauges: dict[tuple[str, str], Sequence[GaugeChange]] = {}
    streams: dict[tuple[str, str], Sequence[StreamPoint]] = {}
    for (meter, customer), items in grouped.items():
        kind = meters[meter].aggregation
        if kind == "unique_count":
            assert _all(items, Simple)
            unique.append((meter, customer, items))
        elif kind in SIMPLE:
            assert _all(items, Simple)
            simple.append((meter, customer, kind, items))
        elif kind == "gauge":
            assert _all(items, GaugeChange)
            gauges[(meter, customer)] = items
        else:
            assert _all(items, StreamPoint)
            streams[(meter, customer)] = items
    repo.add_unique(conn, unique)
    repo.bump_buckets(conn, simple)
    repo.add_gauge_changes(conn, gauges)
    durations.fold(conn, meters, streams)


def _idle_us(spec: MeterSpec) -> int | None:
    return spec.idle_timeout * US if spec.idle_timeout else None


# --- reads -----------------------------------------------------------------------------------


def usage(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, at: int
) -> Decimal:
    """The meter's quantity for [lo, hi) at instant `at`: events stamped up to and at `at`,
    spans cut at `at`. Spans are derived from every event known now, so a stream that a
    later event shows was idle counts as closed at its last event, also before `at`."""
    kind = spec.aggregation
    if kind == "duration":
        return _duration_read(conn, spec, meter, customer, lo, hi, at)
    end = min(hi, at + 1)
    if end <= lo:
        return Decimal(0)
    if kind == "gauge":
        return repo.gauge_read(conn, meter, customer, lo, end)[0]
    if kind == "unique_count":
        return _unique_read(conn, spec, meter, customer, lo, end)
    return _simple_read(conn, spec, meter, customer, lo, end)


def usage_and_level(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, at: int
) -> tuple[Decimal, Decimal | None]:
    """`usage`, and for a gauge also the level held at `at` (both from one read)."""
    if spec.aggregation != "gauge":
        return usage(conn, spec, meter, customer, lo, hi, at), None
    end = min(hi, at + 1)
    if lo < end == at + 1:  # the window reaches `at`: its read ends with the level there
        return repo.gauge_read(conn, meter, customer, lo, end)
    return usage(conn, spec, meter, customer, lo, hi, at), repo.gauge_read(
        conn, meter, customer, at, at + 1
    )[1]


def _raw_simple(conn: Connection, spec: MeterSpec, customer: str, lo: int, hi: int) -> list[Simple]:
    out: list[Simple] = []
    for row in event_log.of_customer(conn, customer, spec.event_type, lo, hi):
        item = interpret_row(spec, customer, row)
        if item is not None:
            assert isinstance(item, Simple)  # `spec` is a simple meter: see `interpret`
            out.append(item)
    return out


def _simple_read(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int
) -> Decimal:
    kind = spec.aggregation
    first, last = lo // repo.HOUR_US, (hi - 1) // repo.HOUR_US
    partials: list[tuple[Decimal, str | None]] = []  # (value, latest key)
    if kind == "latest":
        newest = repo.middle_latest(conn, meter, customer, first, last)
        if newest is not None:
            partials.append((newest[1], newest[0]))
    else:
        middle = repo.middle_aggregate(conn, meter, customer, kind, first, last)
        if middle is not None:
            partials.append((middle, None))
    for row in repo.bucket_rows(conn, meter, customer, first, last):
        if row.min_us >= lo and row.max_us < hi:
            value = {
                "count": Decimal(row.n),
                "sum": row.total,
                "max": row.vmax,
                "latest": row.latest_value,
            }[kind]
            partials.append((value, row.latest_key))
        else:
            b = row.bucket * repo.HOUR_US
            items = _raw_simple(conn, spec, customer, max(lo, b), min(hi, b + repo.HOUR_US))
            if items:
                top = max(items, key=lambda i: (i.t, i.order_key))
                partials.append((aggregate_simple(kind, items), latest_key(top.t, top.order_key)))
    if kind == "latest":
        keyed = [(value, key) for value, key in partials if key is not None]
        return Decimal(max(keyed, key=lambda p: p[1])[0]) if keyed else Decimal(0)
    values = [Decimal(v) for v, _ in partials]
    if kind == "max":
        return max(values, default=Decimal(0))
    return sum(values, Decimal(0))


def _unique_read(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int
) -> Decimal:
    inside = repo.unique_count_inside(conn, meter, customer, lo, hi)
    edge_values: set[str] = set()
    for a, b in repo.unique_edge_ranges(conn, meter, customer, lo, hi):
        edge_values.update(unique_value(i) for i in _raw_simple(conn, spec, customer, a, b))
    extra = edge_values - repo.unique_values_inside(conn, meter, customer, lo, hi, edge_values)
    return Decimal(inside + len(extra))


def _duration_read(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, at: int
) -> Decimal:
    h = min(hi, at)
    if h <= lo:
        return Decimal(0)
    unit = spec.rounding.unit_seconds * US if spec.rounding else None
    mode = spec.rounding.mode if spec.rounding else "ceil"
    total = repo.merged_total(conn, meter, customer, lo, h, unit, mode)
    extents: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in repo.open_spans(conn, meter, customer, h):
        iv = extent(Span(row.start_us, None, row.last_us), at, _idle_us(spec))
        if iv is not None:
            extents[row.merge_key].append(iv)
    # Open streams join the closed merged spans they touch: re-merge just those.
    for merge_key, ivs in extents.items():
        closed = repo.merged_overlapping(
            conn, meter, customer, merge_key, min(s for s, _ in ivs), max(e for _, e in ivs)
        )
        total -= sum(round_length(clipped_length(c, lo, h), unit, mode) for c in closed)
        total += sum(
            round_length(clipped_length(m, lo, h), unit, mode) for m in merge([*ivs, *closed])
        )
    return to_unit(total, spec.unit)


# --- recomputation from raw events -------------------------------------------------------


def raw_contributions(conn: Connection, spec: MeterSpec, customer: str) -> list[Contribution]:
    rows = event_log.of_customer(conn, customer, spec.event_type, 0, 2**63 - 1)
    return [c for row in rows if (c := interpret_row(spec, customer, row)) is not None]


def recompute_usage(
    conn: Connection, spec: MeterSpec, customer: str, lo: int, hi: int, at: int
) -> Decimal:
    """The same number as `usage`, from the raw events alone (slow; for checks and tests)."""
    items = raw_contributions(conn, spec, customer)
    return usage_of(spec, items, lo, hi, at)


def usage_of(spec: MeterSpec, items: Sequence[Contribution], lo: int, hi: int, at: int) -> Decimal:
    """The definition of a meter's quantity, over contributions held in memory."""
    kind = spec.aggregation
    if kind == "duration":
        assert _all(items, StreamPoint)
        return duration_usage(items, spec, lo, hi, at)
    end = min(hi, at + 1)
    if end <= lo:
        return Decimal(0)
    if kind == "gauge":
        assert _all(items, GaugeChange)
        return gauge_usage(items, lo, end)[0]
    assert _all(items, Simple)
    return aggregate_simple(kind, (i for i in items if lo <= i.t < end))


def rebuild(conn: Connection, catalog: Catalog, meter: str, chunk: int = 5000) -> int:
    """Throw away a meter's incremental state and derive it again from the raw events."""
    spec = catalog.meters[meter]
    repo.clear_meter(conn, meter)
    count, after = 0, -1
    while True:
        rows = event_log.of_type_after(conn, spec.event_type, after, chunk)
        if not rows:
            return count
        after = rows[-1].pk
        grouped: dict[tuple[str, str], list[Contribution]] = defaultdict(list)
        for row in rows:
            if (c := interpret_row(spec, row.subject, row)) is not None:
                grouped[(meter, row.subject)].append(c)
                count += 1
        apply(conn, {meter: spec}, grouped)


# --- snapshots: usage as time alone moves, from one read ----------------------------------


def snapshot(
    conn: Connection, spec: MeterSpec, meter: str, customer: str, lo: int, hi: int, taken: int
) -> Snapshot:
    """A duration meter's state in [lo, hi) as of `taken` (see `spans.Snapshot`): three
    queries, then `snapshot_usage` answers `usage` at any instant from `taken` on in memory."""
    unit = spec.rounding.unit_seconds * US if spec.rounding else None
    mode = spec.rounding.mode if spec.rounding else "ceil"
    open_by_key: dict[str, list[Span]] = defaultdict(list)
    for row in repo.open_spans(conn, meter, customer, hi):
        open_by_key[row.merge_key].append(Span(row.start_us, None, row.last_us))
    reach = {key: min(s.start for s in spans) for key, spans in open_by_key.items()}
    closed: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in repo.closed_for_snapshot(conn, meter, customer, lo, hi, taken, reach):
        closed[row.merge_key].append((row.start_us, row.end_us))
    # The fixed part: every closed merged span as clipped at `taken` (it ends by then, so no
    # later instant clips it more), less the listed ones, which are counted per instant.
    h = min(hi, taken)
    fixed = 0
    if h > lo:
        fixed = repo.merged_total(conn, meter, customer, lo, h, unit, mode) - sum(
            round_length(clipped_length(c, lo, h), unit, mode)
            for spans in closed.values()
            for c in spans
            if c[1] > lo and c[0] < h
        )
    return Snapshot(
        lo, hi, taken, fixed, dict(closed), dict(open_by_key), _idle_us(spec), unit, mode
    )


def snapshot_usage(spec: MeterSpec, snap: Snapshot, at: int) -> Decimal:
    """`usage` at `at` (>= the snapshot's instant) of the meter the snapshot was read from."""
    return to_unit(snap.usage_us(at), spec.unit)


def clear(conn: Connection, meter: str) -> None:
    """Throw away a meter's incremental state (a meter the catalog no longer has)."""
    repo.clear_meter(conn, meter)


def any_open_span(conn: Connection, meter: str, customer: str) -> bool:
    """Is one of the customer's streams of this meter open (its usage moves with time)?"""
    return repo.any_open_span(conn, meter, customer)


def spans_overlapping(
    conn: Connection, meter: str, customer: str, lo: int, hi: int
) -> list[Row[Any]]:
    """Every span of the meter and customer that may cover part of `[lo, hi)` (the closed ones
    ending after `lo`, and the open ones): merge_key, start_us, end_us, last_us."""
    return repo.spans_overlapping(conn, meter, customer, lo, hi)


def gauge_level_before(conn: Connection, meter: str, customer: str, instant: int) -> Decimal:
    """The gauge's level just before `instant` (0 before its first change)."""
    return repo.gauge_level_before(conn, meter, customer, instant)


def gauge_levels_between(
    conn: Connection, meter: str, customer: str, lo: int, hi: int
) -> Iterator[tuple[int, Decimal]]:
    """(instant, level after it) of every change in `[lo, hi)`, in event order, paged."""
    return repo.gauge_levels_between(conn, meter, customer, lo, hi)
