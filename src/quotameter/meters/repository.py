"""All SQL for meter state: the incremental aggregates and the reads over them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
)

from quotameter.meters.model import GaugeChange, Simple, latest_key, unique_value
from quotameter.meters.spans import Span, merge
from quotameter.store import bulk
from quotameter.store.tables import (
    DERIVED_TABLES,
    buckets,
    gauge_points,
    merged_spans,
    stream_spans,
    unique_values,
)
from quotameter.store.tables import Decimal as DecimalColumn

HOUR_US = 3_600 * 1_000_000


def _sql(conn: Connection) -> dict[str, str]:
    """The few spellings that differ between the two databases."""
    if conn.dialect.name == "sqlite":
        return {
            "add": "dec_add({a}, {b})",
            "max": "dec_max({a}, {b})",
            "least": "min",
            "greatest": "max",
        }
    return {
        "add": "COALESCE({a} + {b}, {a}, {b})",
        "max": "GREATEST({a}, {b})",
        "least": "LEAST",
        "greatest": "GREATEST",
    }


# --- count / sum / max / latest -----------------------------------------------------------


def bump_buckets(
    conn: Connection, groups: Iterable[tuple[str, str, str, Sequence[Simple]]]
) -> None:
    """Add the (meter, customer, kind, contributions) groups of a batch to their hour buckets,
    all customers in one statement."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for meter, customer, kind, items in groups:
        _fold_buckets(rows, meter, customer, kind, items)
    if not rows:
        return
    s = _sql(conn)
    newer = "excluded.latest_key > meter_buckets.latest_key OR meter_buckets.latest_key IS NULL"
    conflict = (
        "ON CONFLICT (meter, customer, bucket) DO UPDATE SET "
        "n = meter_buckets.n + excluded.n, "
        f"total = {s['add'].format(a='meter_buckets.total', b='excluded.total')}, "
        f"vmax = {s['max'].format(a='meter_buckets.vmax', b='excluded.vmax')}, "
        f"latest_value = CASE WHEN {newer} THEN excluded.latest_value ELSE "
        "meter_buckets.latest_value END, "
        f"latest_key = CASE WHEN {newer} THEN excluded.latest_key ELSE meter_buckets.latest_key "
        "END, "
        f"min_us = {s['least']}(meter_buckets.min_us, excluded.min_us), "
        f"max_us = {s['greatest']}(meter_buckets.max_us, excluded.max_us)"
    )
    # Sorted: concurrent batches then lock shared bucket rows in the same order (no deadlock).
    bulk.insert(
        conn,
        "meter_buckets",
        _BUCKET_COLUMNS,
        _BUCKET_TYPES,
        [tuple(rows[k].values()) for k in sorted(rows)],
        conflict,
    )


# A bucket row's columns and their PostgreSQL types, in the order of `_fold_buckets`'s dicts.
_BUCKET_COLUMNS = (
    "meter",
    "customer",
    "bucket",
    "n",
    "total",
    "vmax",
    "latest_key",
    "latest_value",
    "min_us",
    "max_us",
)
_BUCKET_TYPES = (
    "text",
    "text",
    "bigint",
    "bigint",
    "numeric",
    "numeric",
    "text",
    "numeric",
    "bigint",
    "bigint",
)


def _fold_buckets(
    rows: dict[tuple[str, str, int], dict[str, Any]],
    meter: str,
    customer: str,
    kind: str,
    items: Sequence[Simple],
) -> None:
    """Aggregate one group's contributions into `rows`, one per (meter, customer, hour)."""
    is_latest = kind == "latest"
    for it in items:
        b = it.t // HOUR_US
        row = rows.get((meter, customer, b))
        key = latest_key(it.t, it.order_key) if is_latest else None
        if row is None:
            rows[(meter, customer, b)] = {
                "meter": meter,
                "customer": customer,
                "bucket": b,
                "n": it.units,
                "total": it.value if kind == "sum" else None,
                "vmax": it.value if kind == "max" else None,
                "latest_key": key if kind == "latest" else None,
                "latest_value": it.value if kind == "latest" else None,
                "min_us": it.t,
                "max_us": it.t,
            }
            continue
        row["n"] += it.units
        if kind == "sum":
            row["total"] += it.value
        elif kind == "max":
            row["vmax"] = max(row["vmax"], it.value)
        elif key is not None and key > row["latest_key"]:  # key: only for `latest`
            row["latest_key"], row["latest_value"] = key, it.value
        row["min_us"] = min(row["min_us"], it.t)
        row["max_us"] = max(row["max_us"], it.t)


def add_unique(conn: Connection, groups: Iterable[tuple[str, str, Sequence[Simple]]]) -> None:
    """Record the distinct values of the (meter, customer, contributions) groups of a batch
    per hour bucket, all customers in one statement."""
    rows: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for meter, customer, items in groups:
        for it in items:
            key = (meter, customer, it.t // HOUR_US, unique_value(it))
            row = rows.get(key)
            if row is None:
                rows[key] = {
                    "meter": meter,
                    "customer": customer,
                    "bucket": key[2],
                    "value": key[3],
                    "min_us": it.t,
                    "max_us": it.t,
                }
            else:
                row["min_us"], row["max_us"] = min(row["min_us"], it.t), max(row["max_us"], it.t)
    if not rows:
        return
    s = _sql(conn)
    bulk.insert(
        conn,
        "meter_unique_values",
        ("meter", "customer", "bucket", "value", "min_us", "max_us"),
        ("text", "text", "bigint", "text", "bigint", "bigint"),
        [tuple(rows[k].values()) for k in sorted(rows)],
        "ON CONFLICT (meter, customer, bucket, value) DO UPDATE SET "
        f"min_us = {s['least']}(meter_unique_values.min_us, excluded.min_us), "
        f"max_us = {s['greatest']}(meter_unique_values.max_us, excluded.max_us)",
    )


def bucket_rows(
    conn: Connection, meter: str, customer: str, first: int, last: int
) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(buckets).where(
                buckets.c.meter == meter,
                buckets.c.customer == customer,
                buckets.c.bucket.in_({first, last}),
            )
        )
    )


def _middle(meter: str, customer: str, first: int, last: int) -> tuple[ColumnElement[bool], ...]:
    return (
        buckets.c.meter == meter,
        buckets.c.customer == customer,
        buckets.c.bucket > first,
        buckets.c.bucket < last,
    )


def middle_aggregate(
    conn: Connection, meter: str, customer: str, kind: str, first: int, last: int
) -> Decimal | None:
    """The count, sum or max over the whole buckets strictly between `first` and `last`."""
    where = _middle(meter, customer, first, last)
    sqlite = conn.dialect.name == "sqlite"
    if kind == "count":
        value = conn.execute(select(func.sum(buckets.c.n)).where(*where)).scalar()
    elif kind == "sum":
        col = (
            func.dec_sum(buckets.c.total, type_=DecimalColumn())
            if sqlite
            else func.sum(buckets.c.total)
        )
        value = conn.execute(select(col).where(*where)).scalar()
    else:
        col = (
            func.dec_maxagg(buckets.c.vmax, type_=DecimalColumn())
            if sqlite
            else func.max(buckets.c.vmax)
        )
        value = conn.execute(select(col).where(*where)).scalar()
    return None if value is None else Decimal(value)


def middle_latest(
    conn: Connection, meter: str, customer: str, first: int, last: int
) -> tuple[str, Decimal] | None:
    """The (latest key, value) of the newest event in the whole buckets strictly between
    `first` and `last`."""
    row = conn.execute(
        select(buckets.c.latest_key, buckets.c.latest_value)
        .where(*_middle(meter, customer, first, last))
        .order_by(buckets.c.latest_key.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.latest_key, row.latest_value)


def unique_count_inside(conn: Connection, meter: str, customer: str, lo: int, hi: int) -> int:
    t = unique_values.c
    return (
        conn.execute(
            select(func.count(t.value.distinct())).where(
                t.meter == meter,
                t.customer == customer,
                t.bucket >= lo // HOUR_US,
                t.bucket <= (hi - 1) // HOUR_US,
                t.min_us >= lo,
                t.max_us < hi,
            )
        ).scalar()
        or 0
    )


def unique_values_inside(
    conn: Connection, meter: str, customer: str, lo: int, hi: int, values: Iterable[str]
) -> set[str]:
    t = unique_values.c
    values = list(values)
    if not values:
        return set()
    return set(
        conn.execute(
            select(t.value)
            .distinct()
            .where(
                t.meter == meter,
                t.customer == customer,
                t.bucket >= lo // HOUR_US,
                t.bucket <= (hi - 1) // HOUR_US,
                t.min_us >= lo,
                t.max_us < hi,
                t.value.in_(values),
            )
        ).scalars()
    )


def unique_edge_ranges(
    conn: Connection, meter: str, customer: str, lo: int, hi: int
) -> list[tuple[int, int]]:
    """Hour buckets whose values also lie outside [lo, hi): those parts are read from raw events."""
    t = unique_values.c
    rows = conn.execute(
        select(t.bucket)
        .distinct()
        .where(
            t.meter == meter,
            t.customer == customer,
            t.bucket >= lo // HOUR_US,
            t.bucket <= (hi - 1) // HOUR_US,
            or_(t.min_us < lo, t.max_us >= hi),
        )
    ).scalars()
    return [(max(lo, b * HOUR_US), min(hi, (b + 1) * HOUR_US)) for b in rows]


# --- gauges --------------------------------------------------------------------------------


def add_gauge_changes(
    conn: Connection, groups: Mapping[tuple[str, str], Sequence[GaugeChange]]
) -> None:
    """Insert the changes of every (meter, customer) gauge of a batch, then re-level, per
    gauge, every later point up to the first untouched `set`: four statements in all."""
    keys = sorted(k for k, changes in groups.items() if changes)
    if not keys:
        return
    bulk.insert(
        conn,
        "gauge_points",
        ("meter", "customer", "t_us", "order_key", "set_value", "delta", "level"),
        ("text", "text", "bigint", "text", "numeric", "numeric", "numeric"),
        [
            (meter, customer, c.t, c.order_key, c.set_value, c.delta, Decimal(0))
            for meter, customer in keys
            for c in groups[(meter, customer)]
        ],
    )
    firsts = [min((c.t, c.order_key) for c in groups[k]) for k in keys]
    k = json_rows(
        conn, ("i", "int"), ("meter", "text"), ("customer", "text"), ("t", "int"), ("o", "ordered")
    )
    param = {
        "k": json_param(
            [[i, m, c, t, o] for i, ((m, c), (t, o)) in enumerate(zip(keys, firsts, strict=True))]
        )
    }
    before: dict[int, Any] = dict(
        conn.execute(
            text(
                f"WITH k AS MATERIALIZED ({k}) SELECT k.i, (SELECT g.level FROM gauge_points g "
                "WHERE g.meter = k.meter AND g.customer = k.customer AND (g.t_us, g.order_key) < "
                "(k.t, k.o) "
                "ORDER BY g.t_us DESC, g.order_key DESC LIMIT 1) FROM k"
            ),
            param,
        ).all()
    )
    later = conn.execute(
        text(
            f"WITH k AS MATERIALIZED ({k}) SELECT k.i, g.t_us, g.order_key, g.set_value, g.delta, "
            "g.level FROM k "
            + _join_each(
                conn,
                "g.t_us, g.order_key, g.set_value, g.delta, g.level",
                "gauge_points g",
                "g.meter = k.meter AND g.customer = k.customer "
                "AND (g.t_us, g.order_key) >= (k.t, k.o)",
                "g.t_us, g.order_key",
            )
            + " ORDER BY k.i, g.t_us, g.order_key"
        ),
        param,
    )
    updates: list[tuple[str, str, int, str, Decimal]] = []
    for i, rows in groupby(later, key=lambda r: r[0]):
        meter, customer = keys[i]
        new = {(c.t, c.order_key) for c in groups[keys[i]]}
        updates.extend(_relevel(meter, customer, before.get(i), rows, new))
    bulk.update(
        conn,
        "gauge_points",
        ("meter", "customer", "t_us", "order_key"),
        ("level",),
        ("text", "text", "bigint", "text", "numeric"),
        updates,
    )


def _relevel(
    meter: str, customer: str, before: Any, later: Iterable[Any], new: set[tuple[int, str]]
) -> list[tuple[str, str, int, str, Decimal]]:
    """The level updates of one gauge: `later` are its points from its first new one on, in
    order; `before` the level just before them (None: nothing before)."""
    level = Decimal(before) if before is not None else Decimal(0)
    last_new = max(new)
    updates: list[tuple[str, str, int, str, Decimal]] = []
    for _, t_us, order_key, set_value, delta, old in later:
        if set_value is not None:
            level = Decimal(set_value)
        if delta is not None:
            level += Decimal(delta)
        is_new = (t_us, order_key) in new
        if is_new or Decimal(old) != level:
            updates.append((meter, customer, t_us, order_key, level))
        elif set_value is not None and (t_us, order_key) > last_new:
            break  # an untouched set past every new point pins the level: nothing after it moves
    return updates


def gauge_read(
    conn: Connection, meter: str, customer: str, lo: int, hi: int
) -> tuple[Decimal, Decimal]:
    """(highest level in [lo, hi) including the one carried in, level just before hi)."""
    g = gauge_points.c
    mine = (g.meter == meter, g.customer == customer)

    def level_before(instant: int) -> Decimal:
        v = conn.execute(
            select(g.level)
            .where(*mine, g.t_us < instant)
            .order_by(g.t_us.desc(), g.order_key.desc())
            .limit(1)
        ).scalar()
        return Decimal(v) if v is not None else Decimal(0)

    col = (
        func.dec_maxagg(g.level, type_=DecimalColumn())
        if conn.dialect.name == "sqlite"
        else func.max(g.level)
    )
    highest = conn.execute(select(col).where(*mine, g.t_us >= lo, g.t_us < hi)).scalar()
    carried = level_before(lo)
    usage = carried if highest is None else max(carried, Decimal(highest))
    return usage, level_before(hi)


# --- durations -----------------------------------------------------------------------------
# Every write-side read here takes the keys of a whole batch (all meters and customers) in
# one JSON parameter, so a batch costs the same few statements whatever the number of
# customers and streams it touches; each key is then an index seek of its own.

StreamId = tuple[str, str, str]  # (meter, customer, stream_key)
MergeId = tuple[str, str, str]  # (meter, customer, merge_key)


def json_rows(conn: Connection, *columns: tuple[str, str]) -> str:
    """A SELECT of the rows of the JSON parameter :k (a list of arrays, values in `columns`
    order; a column is "int", "text" or "ordered": text compared by code point)."""
    if conn.dialect.name == "sqlite":
        cols = ", ".join(
            f"json_extract(value, '$[{n}]') AS {name}" for n, (name, _) in enumerate(columns)
        )
        return f"SELECT {cols} FROM json_each(:k)"
    spell = {
        "int": "CAST(e->>{n} AS bigint)",
        "text": "(e->>{n})",
        "ordered": '(e->>{n}) COLLATE "C"',
    }
    cols = ", ".join(
        f"{spell[kind].format(n=n)} AS {name}" for n, (name, kind) in enumerate(columns)
    )
    return f"SELECT {cols} FROM jsonb_array_elements(CAST(:k AS jsonb)) AS e"


def json_param(rows: Sequence[Sequence[Any]]) -> str:
    return orjson.dumps(rows).decode()


@dataclass(frozen=True, slots=True)
class LatestRow:
    """A stream's derived row of the latest start: its open span, its last closed span, or a
    mark (a closed row of no length, start = end) standing for a stream none of whose
    events made a span since. Its `last` is the instant of the stream's latest start, stop or
    heartbeat stored: every other one lies at or before it."""

    id: int
    start: int
    end: int | None
    last: int

    @property
    def is_open(self) -> bool:
        return self.end is None

    @property
    def is_mark(self) -> bool:
        return self.end == self.start


def latest_rows(conn: Connection, streams: Sequence[StreamId]) -> dict[StreamId, LatestRow]:
    """The latest derived row of each stream that has one, one query for a whole batch."""
    if not streams:
        return {}
    k = json_rows(conn, ("i", "int"), ("meter", "text"), ("customer", "text"), ("sk", "text"))
    rows = conn.execute(
        text(
            f"WITH k AS MATERIALIZED ({k}) SELECT k.i, s.id, s.start_us, s.end_us, s.last_us "
            "FROM k JOIN stream_spans s ON s.id = (SELECT x.id FROM stream_spans x WHERE "
            "x.meter = k.meter AND x.customer = k.customer AND x.stream_key = k.sk AND NOT "
            "x.explicit ORDER BY x.start_us DESC LIMIT 1)"
        ),
        {"k": json_param([[i, *sid] for i, sid in enumerate(streams)])},
    )
    return {streams[i]: LatestRow(id_, start, end, last) for i, id_, start, end, last in rows}


def _join_each(
    conn: Connection, columns: str, table: str, on: str, order: str, *, left: bool = False
) -> str:
    """A join of each row of the query so far to the rows of `table` (with its alias) meeting
    `on`, which names the alias's `columns`.

    PostgreSQL is asked for them one outer row at a time, in `order` (a LATERAL subquery): a
    plan that does not depend on the tables' statistics, along the index that gives that
    order. Without statistics (a new database, or one autovacuum has not analyzed yet) the
    join form could be planned as a hash join over the whole table, or along an index that
    shares only its first columns with the one meant: a read that grew with the history
    stored. SQLite has no LATERAL, and plans the join form one outer row at a time, along the
    index that serves the most of `on`."""
    alias = table.split()[-1]
    if conn.dialect.name == "postgresql":
        lateral = f"LATERAL (SELECT {columns} FROM {table} WHERE {on} ORDER BY {order}) {alias}"
        return f"LEFT JOIN {lateral} ON true" if left else f"CROSS JOIN {lateral}"
    return f"{'LEFT ' if left else ''}JOIN {table} ON {on}"


def spans_since(
    conn: Connection, before: Mapping[StreamId, tuple[int, int]]
) -> dict[StreamId, tuple[int, list[tuple[int, int, int | None]]]]:
    """For streams to replay, given (t, otherwise) each: the start of the stream's last span
    that began before t (`otherwise` if none), the instant to replay it from; and its
    derived rows from then on and its marks (id, start, end), which the replay replaces."""
    out: dict[StreamId, tuple[int, list[tuple[int, int, int | None]]]] = {}
    if not before:
        return out
    ids = list(before)
    k = json_rows(
        conn,
        ("i", "int"),
        ("meter", "text"),
        ("customer", "text"),
        ("sk", "text"),
        ("t", "int"),
        ("otherwise", "int"),
    )
    same = "{x}.meter = {k}.meter AND {x}.customer = {k}.customer AND {x}.stream_key = {k}.sk"
    replaced = (
        f"{same.format(x='s', k='b')} AND NOT s.explicit "
        "AND (s.start_us >= b.since OR s.end_us = s.start_us)"
    )
    rows_of_streams = _join_each(
        conn, "s.id, s.start_us, s.end_us", "stream_spans s", replaced, "s.start_us", left=True
    )
    rows = conn.execute(
        text(
            f"WITH k AS MATERIALIZED ({k}), b AS MATERIALIZED (SELECT k.i, k.meter, k.customer, "
            "k.sk, COALESCE((SELECT max(x.start_us) FROM stream_spans x WHERE "
            f"{same.format(x='x', k='k')} AND NOT x.explicit AND x.start_us < k.t "
            "AND (x.end_us IS NULL OR x.end_us > x.start_us)), k.otherwise) AS since FROM k) "
            f"SELECT b.i, b.since, s.id, s.start_us, s.end_us FROM b {rows_of_streams}"
        ),
        {"k": json_param([[i, *sid, *before[sid]] for i, sid in enumerate(ids)])},
    )
    for i, since, span_id, start, end in rows:
        found = out.setdefault(ids[i], (since, []))
        if span_id is not None:
            found[1].append((span_id, start, end))
    return out


def replace_spans(
    conn: Connection,
    doomed: Sequence[int],
    continued: Sequence[tuple[int, int | None, int]],
    rows: Sequence[SpanRow],
) -> None:
    """Delete the derived spans with these ids, set the (id, end, last) of those `continued`,
    then insert these spans (rows of `span_row`)."""
    bulk.delete(conn, "stream_spans", ("id",), ("bigint",), [(i,) for i in sorted(doomed)])
    bulk.update(
        conn,
        "stream_spans",
        ("id",),
        ("end_us", "last_us"),
        ("bigint", "bigint", "bigint"),
        sorted(continued),
    )
    bulk.insert(
        conn,
        "stream_spans",
        (
            "meter",
            "customer",
            "stream_key",
            "merge_key",
            "start_us",
            "end_us",
            "last_us",
            "explicit",
        ),
        ("text", "text", "text", "text", "bigint", "bigint", "bigint", "boolean"),
        rows,
    )


# A stream_spans row: meter, customer, stream key, merge key, start, end, last, explicit.
SpanRow = tuple[str, str, str, str, int, int | None, int, bool]


def span_row(
    meter: str, customer: str, stream_key: str, merge_key: str, span: Span, *, explicit: bool
) -> SpanRow:
    return (meter, customer, stream_key, merge_key, span.start, span.end, span.last, explicit)


def remerge(
    conn: Connection,
    windows: Mapping[MergeId, tuple[int, int]],
    added: Mapping[MergeId, Sequence[tuple[int, int]]],
    removed: Collection[MergeId],
) -> None:
    """Rebuild the merged (closed) spans of each merge key wherever its [lo, hi] may have
    changed, for all merge keys of a batch at once (the stream spans are already written).
    Where the batch only `added` closed spans, their union with the merged spans they reach
    is the new one; only a merge key with spans `removed` (or shortened) reads its closed
    stream spans again."""
    if not windows:
        return
    ids = sorted(windows)
    reach = _merged_reach(conn, ids, windows)
    closed: dict[int, list[tuple[int, int]]] = {
        i: [*reach[i][1], *added.get(mid, ())] for i, mid in enumerate(ids) if mid not in removed
    }
    reread = [i for i, mid in enumerate(ids) if mid in removed]
    if reread:
        for i in reread:
            closed[i] = []
        k = json_rows(
            conn,
            ("i", "int"),
            ("meter", "text"),
            ("customer", "text"),
            ("merge_key", "text"),
            ("a", "int"),
            ("b", "int"),
        )
        for i, start, end in conn.execute(
            text(
                f"WITH k AS MATERIALIZED ({k}) SELECT k.i, s.start_us, s.end_us FROM k "
                + _join_each(
                    conn,
                    "s.start_us, s.end_us",
                    "stream_spans s",
                    "s.merge_key = k.merge_key AND s.meter = k.meter AND s.customer = k.customer "
                    "AND s.start_us >= k.a AND s.start_us <= k.b AND s.end_us > s.start_us",
                    "s.start_us",
                )
            ),
            {"k": json_param([[i, *ids[i], *reach[i][0]] for i in reread])},
        ):
            closed[i].append((start, end))
    doomed: list[tuple[str, str, str, int]] = []
    fresh: list[tuple[str, str, str, int, int]] = []
    for i, (meter, customer, merge_key) in enumerate(ids):
        # Only what changed is written: merged spans left as they were stay in place.
        old, new = set(reach[i][1]), set(merge(closed[i]))
        doomed += [(meter, customer, merge_key, st) for st, _ in sorted(old - new)]
        fresh += [(meter, customer, merge_key, st, en) for st, en in sorted(new - old)]
    bulk.delete(
        conn,
        "merged_spans",
        ("meter", "customer", "merge_key", "start_us"),
        ("text", "text", "text", "bigint"),
        doomed,
    )
    bulk.insert(
        conn,
        "merged_spans",
        ("meter", "customer", "merge_key", "start_us", "end_us"),
        ("text", "text", "text", "bigint", "bigint"),
        fresh,
    )


def _reach_sql(conn: Connection, k: str) -> str:
    """The merged spans a re-merge reaches, per merge key of the rows `k`: the one starting
    last before lo, and those starting in [lo, hi], each read along the primary key (meter,
    customer, merge key, start). On PostgreSQL one merge key at a time, in that order, for a
    plan that does not depend on the statistics (see `_join_each`): the join form was planned
    without them on the (meter, customer, end) index, filtering every merged span of the
    customer."""
    same = "{x}.meter = k.meter AND {x}.customer = k.customer AND {x}.merge_key = k.merge_key"
    if conn.dialect.name == "postgresql":
        before = (
            "CROSS JOIN LATERAL (SELECT x.start_us, x.end_us FROM merged_spans x WHERE "
            f"{same.format(x='x')} AND x.start_us < k.lo ORDER BY x.start_us DESC LIMIT 1) m"
        )
    else:
        before = (
            f"JOIN merged_spans m ON {same.format(x='m')} AND m.start_us = (SELECT "
            f"max(x.start_us) FROM merged_spans x WHERE {same.format(x='x')} AND x.start_us < k.lo)"
        )
    inside = _join_each(
        conn,
        "m.start_us, m.end_us",
        "merged_spans m",
        f"{same.format(x='m')} AND m.start_us >= k.lo AND m.start_us <= k.hi",
        "m.start_us",
    )
    rows = "SELECT k.i, m.start_us, m.end_us FROM k"
    return f"WITH k AS MATERIALIZED ({k}) {rows} {before} UNION ALL {rows} {inside}"


def _merged_reach(
    conn: Connection, ids: Sequence[MergeId], windows: Mapping[MergeId, tuple[int, int]]
) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """Per merge key, the range [a, b] its re-merge covers and the merged spans starting in it:
    the window widened to the merged span reaching into it from before, and to the ends of
    those starting inside (merged spans never overlap, so no other starts in [a, b])."""
    k = json_rows(
        conn,
        ("i", "int"),
        ("meter", "text"),
        ("customer", "text"),
        ("merge_key", "text"),
        ("lo", "int"),
        ("hi", "int"),
    )
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, start, end in conn.execute(
        text(_reach_sql(conn, k)),
        {"k": json_param([[i, *mid, *windows[mid]] for i, mid in enumerate(ids)])},
    ):
        found[i].append((start, end))
    out = []
    for i, mid in enumerate(ids):
        lo, hi = windows[mid]
        a, b, rows = lo, hi, []
        for start, end in found[i]:
            if start < lo and end < lo:
                continue  # ends before the window: untouched
            a, b = min(a, start), max(b, end)
            rows.append((start, end))
        out.append(((a, b), rows))
    return out


def open_spans(conn: Connection, meter: str, customer: str, before: int) -> list[Row[Any]]:
    s = stream_spans.c
    return list(
        conn.execute(
            select(s.merge_key, s.start_us, s.last_us).where(
                s.meter == meter, s.customer == customer, s.end_us.is_(None), s.start_us < before
            )
        )
    )


def _rounded_sql(conn: Connection, unit_us: int | None, mode: str) -> str:
    """SQL for the rounded length of each merged span clipped to [:lo, :hi). The instants are
    bound, not written in: the text is the same for every window, so it is compiled and
    prepared once (an instant written in made every read of an open period a new statement)."""
    s = _sql(conn)
    length = f"({s['least']}(end_us, :hi) - {s['greatest']}(start_us, :lo))"
    if unit_us is None:
        return length
    u = int(unit_us)
    if mode == "ceil":
        return f"(({length} + {u - 1}) / {u}) * {u}"
    if mode == "floor":
        return f"({length} / {u}) * {u}"
    return f"(({length} + {u // 2}) / {u}) * {u}"


def merged_total(
    conn: Connection, meter: str, customer: str, lo: int, hi: int, unit_us: int | None, mode: str
) -> int:
    expr = _rounded_sql(conn, unit_us, mode)
    total = conn.execute(
        text(
            f"SELECT SUM({expr}) FROM merged_spans "
            "WHERE meter = :meter AND customer = :customer AND end_us > :lo AND start_us < :hi"
        ),
        {"meter": meter, "customer": customer, "lo": lo, "hi": hi},
    ).scalar()
    return int(total or 0)


def merged_overlapping(
    conn: Connection, meter: str, customer: str, merge_key: str, lo: int, hi: int
) -> list[tuple[int, int]]:
    """The (start, end) of the merged spans of the merge key that touch [lo, hi] (end >= lo,
    start <= hi): what a re-merge of that window reaches (`_merged_reach`), two seeks along
    the primary key. A filter on end >= lo and start <= hi would read, along that key, every
    merged span of the merge key that starts before hi: its whole history."""
    mid = (meter, customer, merge_key)
    return _merged_reach(conn, [mid], {mid: (lo, hi)})[0][1]


def clear_meter(conn: Connection, meter: str, customer: str | None = None) -> None:
    for table in DERIVED_TABLES:
        where = [table.c.meter == meter]
        if customer is not None:
            where.append(table.c.customer == customer)
        conn.execute(delete(table).where(and_(*where)))


_ANY_OPEN = text(
    "SELECT 1 FROM stream_spans WHERE meter = :m AND customer = :c AND end_us IS NULL LIMIT 1"
)


def any_open_span(conn: Connection, meter: str, customer: str) -> bool:
    return conn.execute(_ANY_OPEN, {"m": meter, "c": customer}).first() is not None


# --- snapshots of a duration meter for the scheduler (reads only) -------------------------


def closed_for_snapshot(
    conn: Connection, meter: str, customer: str, lo: int, hi: int, taken: int, reach: dict[str, int]
) -> list[Row[Any]]:
    """The closed merged spans overlapping [lo, hi) that time can still change the share of:
    those ending after `taken`, and those of a merge key in `reach` ending at or after its
    earliest open start (an open stream may join them)."""
    m = merged_spans.c
    moving = [
        m.end_us > taken,
        *(and_(m.merge_key == key, m.end_us >= start) for key, start in reach.items()),
    ]
    return list(
        conn.execute(
            select(m.merge_key, m.start_us, m.end_us).where(
                m.meter == meter,
                m.customer == customer,
                m.end_us > lo,
                m.start_us < hi,
                or_(*moving),
            )
        )
    )


PAGE = 5_000


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
    closed = conn.execute(columns.where(s.end_us > lo, s.end_us > s.start_us)).all()
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
