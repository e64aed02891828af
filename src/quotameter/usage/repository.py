"""All SQL of usage breakdowns: raw events, stream spans and gauge levels of one customer.
Events and gauge levels are read a page at a time (keyset pagination), so memory stays
bounded however long the range."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, select, tuple_

from quotameter.store.tables import events, gauge_points, stream_spans

PAGE = 5_000


def events_between(
    conn: Connection, customer: str, event_type: str, lo: int, hi: int, page: int = PAGE
) -> Iterator[Any]:
    """The customer's events of one type stamped in `[lo, hi)`, in time order, a page at a time.

    Pages follow the (subject, type, time) index alone, so no page sorts what is left of the
    range: a page ends before the instant of its last row and the next page starts at that
    instant, so the events of one instant are never split between pages."""
    e = events.c
    query = select(e.time_us, e.source, e.event_id, e.data).where(
        e.subject == customer, e.type == event_type, e.time_us < hi
    )
    start = lo
    while True:
        rows = conn.execute(query.where(e.time_us >= start).order_by(e.time_us).limit(page)).all()
        if len(rows) < page:
            yield from rows
            return
        last = rows[-1].time_us
        if rows[0].time_us == last:  # a whole page at one instant: that instant in one go
            yield from conn.execute(query.where(e.time_us == last)).all()
            start = last + 1
        else:
            yield from (row for row in rows if row.time_us < last)
            start = last


def spans_overlapping(
    conn: Connection, meter: str, customer: str, lo: int, hi: int
) -> list[Row[Any]]:
    """Every span of the meter and customer (derived from start/stop/heartbeat, or sent whole)
    that may cover part of `[lo, hi)`: the closed ones that end after `lo` and the open ones.
    A merge key's spans are merged together, so they are all read before any is used."""
    s = stream_spans.c
    columns = select(s.merge_key, s.start_us, s.end_us, s.last_us).where(
        s.meter == meter, s.customer == customer, s.start_us < hi
    )
    closed = conn.execute(columns.where(s.end_us > lo)).all()
    return [*closed, *conn.execute(columns.where(s.end_us.is_(None)))]


def gauge_level_before(conn: Connection, meter: str, customer: str, instant: int) -> Decimal:
    g = gauge_points.c
    level = conn.execute(
        select(g.level)
        .where(g.meter == meter, g.customer == customer, g.t_us < instant)
        .order_by(g.t_us.desc(), g.order_key.desc())
        .limit(1)
    ).scalar()
    return Decimal(level) if level is not None else Decimal(0)


def gauge_levels_between(
    conn: Connection, meter: str, customer: str, lo: int, hi: int, page: int = PAGE
) -> Iterator[tuple[int, Decimal]]:
    """(instant, level after it) of every change in `[lo, hi)`, in event order."""
    g = gauge_points.c
    query = (
        select(g.t_us, g.order_key, g.level)
        .where(g.meter == meter, g.customer == customer, g.t_us >= lo, g.t_us < hi)
        .order_by(g.t_us, g.order_key)
        .limit(page)
    )
    after: tuple[int, str] | None = None
    while True:
        q = query if after is None else query.where(tuple_(g.t_us, g.order_key) > tuple_(*after))
        rows = conn.execute(q).all()
        for row in rows:
            yield row.t_us, Decimal(row.level)
        if len(rows) < page:
            return
        after = (rows[-1].t_us, rows[-1].order_key)
