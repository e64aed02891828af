"""All SQL for meter state: the incremental aggregates and the reads over them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, text, tuple_, update

from quotameter.meters.model import GaugeChange, Simple, StreamPoint, latest_key
from quotameter.meters.spans import Span
from quotameter.store.tables import Decimal as DecimalColumn
from quotameter.store.tables import (
    DERIVED_TABLES,
    buckets,
    events,
    gauge_points,
    merged_spans,
    stream_points,
    stream_spans,
    unique_values,
)

HOUR_US = 3_600 * 1_000_000


def _sql(conn: Connection) -> dict[str, str]:
    """The few spellings that differ between the two databases."""
    if conn.dialect.name == "sqlite":
        return {"add": "dec_add({a}, {b})", "max": "dec_max({a}, {b})", "least": "min", "greatest": "max"}
    return {"add": "COALESCE({a} + {b}, {a}, {b})", "max": "GREATEST({a}, {b})", "least": "LEAST",
            "greatest": "GREATEST"}


# --- count / sum / max / latest -----------------------------------------------------------

def bump_buckets(conn: Connection, meter: str, customer: str, items: Sequence[Simple], kind: str) -> None:
    rows: dict[int, dict] = {}
    is_latest = kind == "latest"
    for it in items:
        b = it.t // HOUR_US
        row = rows.get(b)
        key = latest_key(it.t, it.order_key) if is_latest else None
        if row is None:
            rows[b] = {"meter": meter, "customer": customer, "bucket": b, "n": it.units,
                       "total": it.value if kind == "sum" else None,
                       "vmax": it.value if kind == "max" else None,
                       "latest_key": key if kind == "latest" else None,
                       "latest_value": it.value if kind == "latest" else None,
                       "min_us": it.t, "max_us": it.t}
            continue
        row["n"] += it.units
        if kind == "sum":
            row["total"] += it.value
        elif kind == "max":
            row["vmax"] = max(row["vmax"], it.value)
        elif is_latest and key > row["latest_key"]:  # type: ignore[operator]
            row["latest_key"], row["latest_value"] = key, it.value
        row["min_us"] = min(row["min_us"], it.t)
        row["max_us"] = max(row["max_us"], it.t)
    if not rows:
        return
    s = _sql(conn)
    newer = "excluded.latest_key > meter_buckets.latest_key OR meter_buckets.latest_key IS NULL"
    stmt = text(
        "INSERT INTO meter_buckets (meter, customer, bucket, n, total, vmax, latest_key, latest_value, min_us, max_us) "
        "VALUES (:meter, :customer, :bucket, :n, :total, :vmax, :latest_key, :latest_value, :min_us, :max_us) "
        "ON CONFLICT (meter, customer, bucket) DO UPDATE SET "
        "n = meter_buckets.n + excluded.n, "
        f"total = {s['add'].format(a='meter_buckets.total', b='excluded.total')}, "
        f"vmax = {s['max'].format(a='meter_buckets.vmax', b='excluded.vmax')}, "
        f"latest_value = CASE WHEN {newer} THEN excluded.latest_value ELSE meter_buckets.latest_value END, "
        f"latest_key = CASE WHEN {newer} THEN excluded.latest_key ELSE meter_buckets.latest_key END, "
        f"min_us = {s['least']}(meter_buckets.min_us, excluded.min_us), "
        f"max_us = {s['greatest']}(meter_buckets.max_us, excluded.max_us)"
    )
    # Sorted: concurrent batches then lock shared bucket rows in the same order (no deadlock).
    conn.execute(stmt, [_bind(conn, rows[b]) for b in sorted(rows)])


def _bind(conn: Connection, row: dict) -> dict:
    # text() bypasses the column types, so decimals are converted here as the Decimal type would.
    if conn.dialect.name == "sqlite":
        return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()}
    return row


def add_unique(conn: Connection, meter: str, customer: str, items: Sequence[Simple]) -> None:
    rows: dict[tuple[int, str], dict] = {}
    for it in items:
        key = (it.t // HOUR_US, it.unique)
        row = rows.get(key)  # type: ignore[arg-type]
        if row is None:
            rows[key] = {"meter": meter, "customer": customer, "bucket": key[0], "value": it.unique,  # type: ignore[index]
                         "min_us": it.t, "max_us": it.t}
        else:
            row["min_us"], row["max_us"] = min(row["min_us"], it.t), max(row["max_us"], it.t)
    if not rows:
        return
    s = _sql(conn)
    conn.execute(text(
        "INSERT INTO meter_unique_values (meter, customer, bucket, value, min_us, max_us) "
        "VALUES (:meter, :customer, :bucket, :value, :min_us, :max_us) "
        "ON CONFLICT (meter, customer, bucket, value) DO UPDATE SET "
        f"min_us = {s['least']}(meter_unique_values.min_us, excluded.min_us), "
        f"max_us = {s['greatest']}(meter_unique_values.max_us, excluded.max_us)"
    ), [rows[k] for k in sorted(rows)])


def bucket_rows(conn: Connection, meter: str, customer: str, first: int, last: int) -> list:
    return list(conn.execute(
        select(buckets).where(buckets.c.meter == meter, buckets.c.customer == customer,
                              buckets.c.bucket.in_({first, last}))
    ))


def middle_aggregate(conn: Connection, meter: str, customer: str, kind: str, first: int, last: int) -> Decimal | None:
    """The aggregate over the whole buckets strictly between `first` and `last`."""
    where = (buckets.c.meter == meter, buckets.c.customer == customer,
             buckets.c.bucket > first, buckets.c.bucket < last)
    sqlite = conn.dialect.name == "sqlite"
    if kind == "count":
        value = conn.execute(select(func.sum(buckets.c.n)).where(*where)).scalar()
    elif kind == "sum":
        col = func.dec_sum(buckets.c.total, type_=DecimalColumn()) if sqlite else func.sum(buckets.c.total)
        value = conn.execute(select(col).where(*where)).scalar()
    elif kind == "max":
        col = func.dec_maxagg(buckets.c.vmax, type_=DecimalColumn()) if sqlite else func.max(buckets.c.vmax)
        value = conn.execute(select(col).where(*where)).scalar()
    else:
        row = conn.execute(select(buckets.c.latest_key, buckets.c.latest_value).where(*where)
                           .order_by(buckets.c.latest_key.desc()).limit(1)).first()
        return row  # type: ignore[return-value]
    return None if value is None else Decimal(value)


def unique_count_inside(conn: Connection, meter: str, customer: str, lo: int, hi: int) -> int:
    t = unique_values.c
    return conn.execute(
        select(func.count(t.value.distinct())).where(
            t.meter == meter, t.customer == customer,
            t.bucket >= lo // HOUR_US, t.bucket <= (hi - 1) // HOUR_US, t.min_us >= lo, t.max_us < hi)
    ).scalar() or 0


def unique_values_inside(conn: Connection, meter: str, customer: str, lo: int, hi: int, values: Iterable[str]) -> set[str]:
    t = unique_values.c
    values = list(values)
    if not values:
        return set()
    return set(conn.execute(
        select(t.value).distinct().where(
            t.meter == meter, t.customer == customer,
            t.bucket >= lo // HOUR_US, t.bucket <= (hi - 1) // HOUR_US, t.min_us >= lo, t.max_us < hi,
            t.value.in_(values))
    ).scalars())


def unique_edge_ranges(conn: Connection, meter: str, customer: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Hour buckets whose values also lie outside [lo, hi): those parts are read from raw events."""
    t = unique_values.c
    rows = conn.execute(
        select(t.bucket).distinct().where(
            t.meter == meter, t.customer == customer,
            t.bucket >= lo // HOUR_US, t.bucket <= (hi - 1) // HOUR_US,
            or_(t.min_us < lo, t.max_us >= hi))
    ).scalars()
    return [(max(lo, b * HOUR_US), min(hi, (b + 1) * HOUR_US)) for b in rows]


def raw_events(conn: Connection, customer: str, event_type: str, lo: int, hi: int) -> list:
    e = events.c
    return list(conn.execute(
        select(e.time_us, e.source, e.event_id, e.data)
        .where(e.subject == customer, e.type == event_type, e.time_us >= lo, e.time_us < hi)
    ))


# --- gauges --------------------------------------------------------------------------------

def add_gauge_changes(conn: Connection, meter: str, customer: str, changes: Sequence[GaugeChange]) -> None:
    """Insert changes, then re-level every later point up to the first untouched `set`."""
    if not changes:
        return
    g = gauge_points.c
    conn.execute(insert(gauge_points), [
        {"meter": meter, "customer": customer, "t_us": c.t, "order_key": c.order_key,
         "set_value": c.set_value, "delta": c.delta, "level": Decimal(0)} for c in changes])
    first = min(changes, key=lambda c: (c.t, c.order_key))
    new = {(c.t, c.order_key) for c in changes}
    last_new = max(new)
    mine = (g.meter == meter, g.customer == customer)
    before = conn.execute(
        select(g.level).where(*mine, tuple_(g.t_us, g.order_key) < tuple_(first.t, first.order_key))
        .order_by(g.t_us.desc(), g.order_key.desc()).limit(1)).scalar()
    level = Decimal(before) if before is not None else Decimal(0)
    later = conn.execute(
        select(g.t_us, g.order_key, g.set_value, g.delta, g.level)
        .where(*mine, tuple_(g.t_us, g.order_key) >= tuple_(first.t, first.order_key))
        .order_by(g.t_us, g.order_key))
    updates = []
    for t_us, order_key, set_value, delta, old in later:
        if set_value is not None:
            level = Decimal(set_value)
        if delta is not None:
            level += Decimal(delta)
        is_new = (t_us, order_key) in new
        if is_new or Decimal(old) != level:
            updates.append({"k_t": t_us, "k_o": order_key, "level": level})
        elif set_value is not None and (t_us, order_key) > last_new:
            break  # an untouched set past every new point pins the level: nothing after it moves
    if updates:
        from sqlalchemy import bindparam

        conn.execute(
            update(gauge_points)
            .where(g.meter == meter, g.customer == customer, g.t_us == bindparam("k_t"), g.order_key == bindparam("k_o"))
            .values(level=bindparam("level")),
            updates)


def gauge_read(conn: Connection, meter: str, customer: str, lo: int, hi: int) -> tuple[Decimal, Decimal]:
    """(highest level in [lo, hi) including the one carried in, level just before hi)."""
    g = gauge_points.c
    mine = (g.meter == meter, g.customer == customer)

    def level_before(instant: int) -> Decimal:
        v = conn.execute(select(g.level).where(*mine, g.t_us < instant)
                         .order_by(g.t_us.desc(), g.order_key.desc()).limit(1)).scalar()
        return Decimal(v) if v is not None else Decimal(0)

    col = func.dec_maxagg(g.level, type_=DecimalColumn()) if conn.dialect.name == "sqlite" else func.max(g.level)
    highest = conn.execute(select(col).where(*mine, g.t_us >= lo, g.t_us < hi)).scalar()
    carried = level_before(lo)
    usage = carried if highest is None else max(carried, Decimal(highest))
    return usage, level_before(hi)


# --- durations -----------------------------------------------------------------------------

def add_stream_points(conn: Connection, meter: str, customer: str, points: Sequence[StreamPoint]) -> None:
    from quotameter.meters.spans import ACTION_RANK

    conn.execute(insert(stream_points), [
        {"meter": meter, "customer": customer, "stream_key": p.stream_key, "merge_key": p.merge_key,
         "t_us": p.t, "rank": ACTION_RANK[p.action], "order_key": p.order_key, "action": p.action,
         "end_us": p.end} for p in points])


def last_span_start_before(conn: Connection, meter: str, customer: str, stream_key: str, t: int) -> int | None:
    s = stream_spans.c
    return conn.execute(
        select(s.start_us).where(s.meter == meter, s.customer == customer, s.stream_key == stream_key,
                                 s.explicit.is_(False), s.start_us < t)
        .order_by(s.start_us.desc()).limit(1)).scalar()


def stream_tail(conn: Connection, meter: str, customer: str, stream_key: str) -> tuple[int, int, str] | None:
    """The order position of the stream's last start/stop/heartbeat."""
    p = stream_points.c
    row = conn.execute(
        select(p.t_us, p.rank, p.order_key)
        .where(p.meter == meter, p.customer == customer, p.stream_key == stream_key, p.action != "span")
        .order_by(p.t_us.desc(), p.rank.desc(), p.order_key.desc()).limit(1)).first()
    return None if row is None else (row.t_us, row.rank, row.order_key)


def open_span(conn: Connection, meter: str, customer: str, stream_key: str) -> Span | None:
    s = stream_spans.c
    row = conn.execute(select(s.start_us, s.last_us).where(
        s.meter == meter, s.customer == customer, s.stream_key == stream_key, s.end_us.is_(None))).first()
    return None if row is None else Span(row.start_us, None, row.last_us)


def stream_actions_from(conn: Connection, meter: str, customer: str, stream_key: str, since: int | None) -> list:
    p = stream_points.c
    q = select(p.t_us, p.action, p.order_key).where(
        p.meter == meter, p.customer == customer, p.stream_key == stream_key, p.action != "span")
    if since is not None:
        q = q.where(p.t_us >= since)
    return list(conn.execute(q))


def replace_stream_spans(conn: Connection, meter: str, customer: str, stream_key: str, merge_key: str,
                         since: int | None, spans: Sequence[Span], *, only_open: bool = False
                         ) -> list[tuple[int, int | None]]:
    """Swap the derived spans of one stream from `since` on (or just its open span);
    returns the (start, end) of all removed."""
    s = stream_spans.c
    where = [s.meter == meter, s.customer == customer, s.stream_key == stream_key, s.explicit.is_(False)]
    if since is not None:
        where.append(s.start_us >= since)
    if only_open:
        where.append(s.end_us.is_(None))
    removed = [(r.start_us, r.end_us) for r in conn.execute(select(s.start_us, s.end_us).where(*where))]
    conn.execute(delete(stream_spans).where(*where))
    insert_spans(conn, meter, customer, stream_key, merge_key, spans, explicit=False)
    return removed


def insert_spans(conn: Connection, meter: str, customer: str, stream_key: str, merge_key: str,
                 spans: Sequence[Span], *, explicit: bool) -> None:
    if spans:
        conn.execute(insert(stream_spans), [
            {"meter": meter, "customer": customer, "stream_key": stream_key, "merge_key": merge_key,
             "start_us": sp.start, "end_us": sp.end, "last_us": sp.last, "explicit": explicit} for sp in spans])


def remerge(conn: Connection, meter: str, customer: str, merge_key: str, lo: int, hi: int) -> None:
    """Rebuild the merged (closed) spans of one merge key wherever [lo, hi] may have changed."""
    from quotameter.meters.spans import merge

    m = merged_spans.c
    mine = (m.meter == meter, m.customer == customer, m.merge_key == merge_key)
    starts_before = conn.execute(select(m.start_us, m.end_us).where(*mine, m.start_us < lo)
                                 .order_by(m.start_us.desc()).limit(1)).first()
    a, b = lo, hi
    if starts_before is not None and starts_before.end_us >= lo:
        a, b = starts_before.start_us, max(hi, starts_before.end_us)
    inside = conn.execute(select(m.start_us, m.end_us).where(*mine, m.start_us >= lo, m.start_us <= hi)).all()
    for row in inside:
        b = max(b, row.end_us)
    conn.execute(delete(merged_spans).where(*mine, m.start_us >= a, m.start_us <= b))
    s = stream_spans.c
    closed = conn.execute(select(s.start_us, s.end_us).where(
        s.meter == meter, s.customer == customer, s.merge_key == merge_key,
        s.end_us.is_not(None), s.start_us >= a, s.start_us <= b)).all()
    merged = merge((r.start_us, r.end_us) for r in closed)
    if merged:
        conn.execute(insert(merged_spans), [
            {"meter": meter, "customer": customer, "merge_key": merge_key, "start_us": st, "end_us": en}
            for st, en in merged])


def open_spans(conn: Connection, meter: str, customer: str, before: int) -> list:
    s = stream_spans.c
    return list(conn.execute(select(s.merge_key, s.start_us, s.last_us).where(
        s.meter == meter, s.customer == customer, s.end_us.is_(None), s.start_us < before)))


def rounded_sql(conn: Connection, lo: int, hi: int, unit_us: int | None, mode: str):  # type: ignore[no-untyped-def]
    """SQL for the rounded length of each merged span clipped to [lo, hi)."""
    s = _sql(conn)
    length = f"({s['least']}(end_us, {int(hi)}) - {s['greatest']}(start_us, {int(lo)}))"
    if unit_us is None:
        return length
    u = int(unit_us)
    if mode == "ceil":
        return f"(({length} + {u - 1}) / {u}) * {u}"
    if mode == "floor":
        return f"({length} / {u}) * {u}"
    return f"(({length} + {u // 2}) / {u}) * {u}"


def merged_total(conn: Connection, meter: str, customer: str, lo: int, hi: int, unit_us: int | None, mode: str) -> int:
    expr = rounded_sql(conn, lo, hi, unit_us, mode)
    total = conn.execute(text(
        f"SELECT SUM({expr}) FROM merged_spans "
        "WHERE meter = :meter AND customer = :customer AND end_us > :lo AND start_us < :hi"
    ), {"meter": meter, "customer": customer, "lo": lo, "hi": hi}).scalar()
    return int(total or 0)


def merged_overlapping(conn: Connection, meter: str, customer: str, merge_key: str, lo: int, hi: int) -> list:
    m = merged_spans.c
    return list(conn.execute(select(m.start_us, m.end_us).where(
        m.meter == meter, m.customer == customer, m.merge_key == merge_key, m.end_us >= lo, m.start_us <= hi)))


def clear_meter(conn: Connection, meter: str, customer: str | None = None) -> None:
    for table in DERIVED_TABLES:
        where = [table.c.meter == meter]
        if customer is not None:
            where.append(table.c.customer == customer)
        conn.execute(delete(table).where(and_(*where)))


_ANY_OPEN = text("SELECT 1 FROM stream_spans WHERE meter = :m AND customer = :c AND end_us IS NULL LIMIT 1")


def any_open_span(conn: Connection, meter: str, customer: str) -> bool:
    return conn.execute(_ANY_OPEN, {"m": meter, "c": customer}).first() is not None


# --- snapshots of a duration meter for the scheduler (reads only) -------------------------

def closed_for_snapshot(conn: Connection, meter: str, customer: str, lo: int, hi: int, taken: int,
                        reach: dict[str, int]) -> list:
    """The closed merged spans overlapping [lo, hi) that time can still change the share of:
    those ending after `taken`, and those of a merge key in `reach` ending at or after its
    earliest open start (an open stream may join them)."""
    m = merged_spans.c
    moving = [m.end_us > taken, *(and_(m.merge_key == key, m.end_us >= start) for key, start in reach.items())]
    return list(conn.execute(select(m.merge_key, m.start_us, m.end_us).where(
        m.meter == meter, m.customer == customer, m.end_us > lo, m.start_us < hi, or_(*moving))))
