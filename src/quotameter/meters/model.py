"""What one event means to one meter, and the pure aggregations over those meanings.

`interpret` turns a validated event into the contribution it makes to a meter (or says
why it cannot). The aggregate functions here are the definition of every meter kind: the
incremental state kept in the database must always equal them applied to the raw events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from quotameter.catalog.model import DURATION_UNITS, MeterSpec
from quotameter.errors import shown
from quotameter.events.model import EventRejected, parse_instant
from quotameter.meters.spans import US, Action, Span, StreamEvent, replay, usage_us

ZERO = Decimal(0)


def duration_unit_us(unit: str) -> int:
    return DURATION_UNITS[unit] * US


@dataclass(slots=True)
class EventFacts:
    """The parts of an accepted event that meters look at."""

    customer: str
    t: int
    order_key: str  # source and id: ties between events at the same instant break on it
    data: Mapping[str, Any]

    @property
    def from_consume(self) -> bool:
        # The order key is "source\x01id", and no source holds a control character.
        return self.order_key.startswith(_CONSUME_KEY)


# Events under this source are recorded by consume alone: ingest refuses it from anyone else.
CONSUME_SOURCE = "quotameter.consume"
_CONSUME_KEY = f"{CONSUME_SOURCE}\x01"
# A consume of n units of a `count` meter is ONE event carrying n in this data property, and
# the meter counts it as n. Only an event under CONSUME_SOURCE may weigh more than one: in
# anyone else's event the property is plain data. Consumes recorded before this existed are
# one event per unit, without the property, and each still counts one.
CONSUME_UNITS = "quotameter.units"
# At most this many units per consume: the hourly count buckets (BIGINT) stay far from overflow.
MAX_CONSUME_UNITS = 10**9


@dataclass(slots=True)
class Simple:
    """A count / sum / max / latest / unique_count contribution."""

    t: int
    order_key: str
    value: Decimal | None = None
    unique: str | None = None
    units: int = 1  # what a `count` meter counts it as (see CONSUME_UNITS)


@dataclass(slots=True)
class GaugeChange:
    t: int
    order_key: str
    set_value: Decimal | None
    delta: Decimal | None


# What a stream point says: a stream event's action, or "span" for a one-event span.
PointAction = Action | Literal["span"]


@dataclass(slots=True)
class StreamPoint:
    stream_key: str
    merge_key: str
    t: int
    action: PointAction
    order_key: str
    end: int | None = None  # for a one-event span: its end (t is its start)


Contribution = Simple | GaugeChange | StreamPoint


def number(data: Mapping[str, Any], prop: str) -> Decimal:
    """A JSON number, or a string holding a plain decimal number, as an exact Decimal."""
    if prop not in data:
        raise EventRejected(f"data.{prop}: required by this event's meter")
    raw = data[prop]
    kind = type(raw)
    try:
        if kind is int:
            value = Decimal(raw)
        elif kind is float:
            value = Decimal(
                repr(raw)
            )  # the shortest text that reads back as this float: what was sent
        elif kind is str and _DECIMAL_TEXT(raw) is not None:
            value = Decimal(raw)
        elif isinstance(raw, Decimal):
            value = raw
        else:
            raise InvalidOperation
    except InvalidOperation:
        got = shown(raw) if isinstance(raw, str) else _json_shown(raw)
        raise EventRejected(f"data.{prop}: must be a number (got {got})") from None
    if not value.is_finite():
        raise EventRejected(f"data.{prop}: must be a finite number (got {raw!r})")
    if value.copy_abs() >= LARGEST:  # copy_abs: exact, where abs() could overflow the context
        raise EventRejected(f"data.{prop}: must be less than 10^15 in magnitude (got {shown(raw)})")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number (checked above) has a numeric exponent
    if exponent < -PLACES:
        value = value.quantize(
            SMALLEST
        )  # as PostgreSQL's NUMERIC(38, 12) would store it, on SQLite too
    return value


# Text that `number` reads: an optional sign, ASCII digits, an optional fraction and exponent,
# nothing around them. Decimal() alone would also read "1_000", "١٢", " 1 ", "Infinity", "NaN".
_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").fullmatch


def _json_shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else f"{text[:57]}..."


# Stored values are NUMERIC(38, 12) (store.tables.Decimal): 10^15 per event leaves room for
# sums of 10^11 such events; more than 12 decimal places are rounded (half even) on every database.
PLACES = 12
SMALLEST = Decimal(1).scaleb(-PLACES)
LARGEST = Decimal(10) ** 15


# Stream and merge keys, and unique_count values, are stored as indexed text. PostgreSQL holds
# no NUL character, and an index entry has a few kilobytes at most: the limits are in UTF-8
# bytes, so that they hold whatever the characters.
KEY_BYTES = 256
UNIQUE_BYTES = 1024
_NUL = "must not contain NUL characters (U+0000)"


def _key(data: Mapping[str, Any], prop: str) -> str:
    raw = data.get(prop)
    if raw is None or isinstance(raw, (dict, list, bool)) or raw == "":
        raise EventRejected(f"data.{prop}: required, a non-empty string or number")
    key = raw if type(raw) is str else str(raw)
    if "\x00" in key:
        raise EventRejected(f"data.{prop}: {_NUL}")
    if len(key) > KEY_BYTES // 4 and len(key.encode()) > KEY_BYTES:
        raise EventRejected(
            f"data.{prop}: at most {KEY_BYTES} bytes in UTF-8 (got {len(key.encode())})"
        )
    return key


def _unique(value: Any, prop: str) -> str:
    # Written as JSON, a NUL is the six characters \u0000: only the length can be too much.
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if len(text) > UNIQUE_BYTES // 4 and len(text.encode()) > UNIQUE_BYTES:
        raise EventRejected(
            f"data.{prop}: at most {UNIQUE_BYTES} bytes once written as JSON (got "
            f"{len(text.encode())})"
        )
    return text


def stream_key(merge_key: str, stream: str) -> str:
    """One key for a stream within its merge key, distinct for every distinct pair.

    The two are joined by U+0001; in the merge key, U+0001 and the escape U+0002 are escaped
    with U+0002, so the first unescaped U+0001 is always the join (user "x\x01y" with stream
    "z" is not user "x" with stream "y\x01z"). A key without those characters is unchanged
    (see migration 20261202_0008)."""
    if "\x01" in merge_key or "\x02" in merge_key:
        merge_key = merge_key.replace("\x02", "\x02\x02").replace("\x01", "\x02\x01")
    return f"{merge_key}\x01{stream}"


def interpret(spec: MeterSpec, ev: EventFacts) -> Contribution:
    """The contribution of an event of this meter's type that passed its filter."""
    kind = spec.aggregation
    data = ev.data
    if kind == "count":
        return Simple(ev.t, ev.order_key, units=consumed_units(ev) if ev.from_consume else 1)
    if kind in ("sum", "max", "latest"):
        return Simple(ev.t, ev.order_key, value=number(data, _value_property(spec)))
    if kind == "unique_count":
        prop = _value_property(spec)
        if prop not in data or data[prop] is None:
            raise EventRejected(f"data.{prop}: required by this event's meter")
        return Simple(ev.t, ev.order_key, unique=_unique(data[prop], prop))
    if kind == "gauge":
        set_value = (
            number(data, spec.value_property)
            if spec.value_property and spec.value_property in data
            else None
        )
        delta = (
            number(data, spec.delta_property)
            if spec.delta_property and spec.delta_property in data
            else None
        )
        if set_value is None and delta is None:
            wanted = " or ".join(
                f"data.{p}" for p in (spec.value_property, spec.delta_property) if p
            )
            raise EventRejected(f"{wanted}: required by this event's meter")
        return GaugeChange(ev.t, ev.order_key, set_value, delta)
    return _stream_point(spec, ev)


def interpret_row(spec: MeterSpec, customer: str, row: Any) -> Contribution | None:
    """What a stored event (time_us, source, event_id, data) contributes to the meter now:
    the same reading as at ingest, so recomputations and replays agree with the state."""
    data = orjson.loads(row.data)
    if not spec.matches(data):
        return None
    facts = EventFacts(customer, row.time_us, f"{row.source}\x01{row.event_id}", data)
    try:
        return interpret(spec, facts)
    except EventRejected:
        return None  # stored under an older definition of the meter: it does not count now


def _value_property(spec: MeterSpec) -> str:
    prop = spec.value_property
    # A valid catalog names it for every aggregation that reads one value (MeterSpec's rules).
    assert prop is not None
    return prop


def consumed_units(ev: EventFacts) -> int:
    """The units a consume's own event counts for: CONSUME_UNITS, or one when it has none
    (a consume recorded one event per unit)."""
    if CONSUME_UNITS not in ev.data:
        return 1
    units = ev.data[CONSUME_UNITS]
    if type(units) is not int or not 1 <= units <= MAX_CONSUME_UNITS:
        raise EventRejected(
            f"data.{CONSUME_UNITS}: must be a whole number from 1 to {MAX_CONSUME_UNITS} "
            f"(got {orjson.dumps(units).decode()})"
        )
    return units


def _stream_point(spec: MeterSpec, ev: EventFacts) -> StreamPoint:
    data = ev.data
    # A valid catalog names a duration meter's stream property (MeterSpec's rules).
    assert spec.stream_property is not None
    key = _key(data, spec.stream_property)
    merge_key = key
    if spec.merge_property:
        # A stream belongs to one merge key: the same stream name under two users is two streams.
        merge_key = _key(data, spec.merge_property)
        key = stream_key(merge_key, key)
    if "start" in data or "end" in data:
        start = parse_instant(data.get("start"), "data.start")
        end = parse_instant(data.get("end"), "data.end")
        if end < start:
            raise EventRejected("data.end: must not be before data.start")
        return StreamPoint(key, merge_key, start, "span", ev.order_key, end)
    action = data.get("action")
    if action not in ("start", "stop", "heartbeat"):
        raise EventRejected(
            "data.action: must be start, stop or heartbeat, or the event must carry data.start "
            "and data.end "
            f"(got {orjson.dumps(action).decode() if action is not None else 'nothing'})"
        )
    return StreamPoint(key, merge_key, ev.t, action, ev.order_key)


# --- the definitions every incremental path must agree with -------------------------------


def latest_key(t: int, order_key: str) -> str:
    return f"{t:020d}\x01{order_key}"


def aggregate_simple(kind: str, items: Iterable[Simple]) -> Decimal:
    items = list(items)
    if kind == "count":
        return Decimal(sum(i.units for i in items))
    if kind == "sum":
        return sum((simple_value(i) for i in items), ZERO)
    if kind == "max":
        return max((simple_value(i) for i in items), default=ZERO)
    if kind == "latest":
        if not items:
            return ZERO
        return simple_value(max(items, key=lambda i: (i.t, i.order_key)))
    if kind == "unique_count":
        return Decimal(len({i.unique for i in items}))
    raise ValueError(f"not a simple aggregation: {kind}")


def simple_value(item: Simple) -> Decimal:
    """The value a sum, max or latest contribution carries."""
    # Every sum, max and latest contribution carries its value (see `interpret`).
    assert item.value is not None
    return item.value


def unique_value(item: Simple) -> str:
    """The value a unique_count contribution counts."""
    # Every unique_count contribution carries its value (see `interpret`).
    assert item.unique is not None
    return item.unique


def gauge_levels(
    changes: Iterable[GaugeChange], start_level: Decimal = ZERO
) -> list[tuple[GaugeChange, Decimal]]:
    """Each change in event order with the level right after it. A set replaces, a delta adds."""
    level = start_level
    out: list[tuple[GaugeChange, Decimal]] = []
    for c in sorted(changes, key=lambda c: (c.t, c.order_key)):
        if c.set_value is not None:
            level = c.set_value
        if c.delta is not None:
            level += c.delta
        out.append((c, level))
    return out


def gauge_usage(changes: Iterable[GaugeChange], lo: int, hi: int) -> tuple[Decimal, Decimal]:
    """(highest level held in [lo, hi), level at hi): the carried-in level counts too."""
    carried = ZERO
    highest: Decimal | None = None
    current = ZERO
    for change, level in gauge_levels(changes):
        if change.t < lo:
            carried = level
        elif change.t < hi:
            highest = level if highest is None else max(highest, level)
        else:
            break
        current = level
    return (carried if highest is None else max(carried, highest)), current


def duration_usage(
    points: Iterable[StreamPoint], spec: MeterSpec, lo: int, hi: int, at: int
) -> Decimal:
    """Recompute a duration meter from its stream points alone."""
    by_stream: dict[str, list[StreamPoint]] = {}
    for p in points:
        by_stream.setdefault(p.stream_key, []).append(p)
    idle = spec.idle_timeout * US if spec.idle_timeout else None
    spans_by_merge: dict[str, list[Span]] = {}
    for pts in by_stream.values():
        merge_key = pts[0].merge_key
        spans = spans_by_merge.setdefault(merge_key, [])
        events: list[StreamEvent] = []
        for p in pts:
            if p.action != "span":
                events.append(StreamEvent(p.t, p.action, p.order_key))
            elif span_end(p) > p.t:
                spans.append(Span(p.t, span_end(p), span_end(p)))
        spans.extend(replay(events, idle))
    return duration_quantity(spans_by_merge, spec, lo, hi, at)


def span_end(point: StreamPoint) -> int:
    """The end of a one-event span."""
    # A "span" point is made with its end (see `_stream_point`), and stored with it.
    assert point.end is not None
    return point.end


def duration_quantity(
    spans_by_merge: dict[str, list[Span]], spec: MeterSpec, lo: int, hi: int, at: int
) -> Decimal:
    idle = spec.idle_timeout * US if spec.idle_timeout else None
    unit = spec.rounding.unit_seconds * US if spec.rounding else None
    mode = spec.rounding.mode if spec.rounding else "ceil"
    total = usage_us(
        spans_by_merge, lo, min(hi, at), at, idle_timeout_us=idle, unit_us=unit, mode=mode
    )
    return to_unit(total, spec.unit)


_MICRO = Decimal("0.000001")


def to_unit(total_us: int, unit: str) -> Decimal:
    """Microseconds in the meter's unit; unrounded minutes keep six decimals."""
    quantity = Decimal(total_us) / Decimal(duration_unit_us(unit))
    if quantity == quantity.to_integral_value():
        return quantity.quantize(Decimal(1))
    return quantity.quantize(_MICRO).normalize()
