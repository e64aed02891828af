"""All SQL for raw events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text
from sqlalchemy import Row as SqlRow

from quotameter.store import bulk
from quotameter.store.tables import events

COLUMNS = ("source", "event_id", "type", "subject", "time_us", "data", "received_us")
Row = tuple[str, str, str, str, int, str, int]


def insert_new(conn: Connection, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
    """Insert events; the (source, id) of those that were not already stored, or None when
    every row was new (the usual case, answered without building the set).

    Deduplication is the unique index's job: a repeat is skipped by ON CONFLICT DO NOTHING,
    also when two processes take the same event at the same moment. This is the hottest
    statement of the service, so it talks to the driver directly.
    """
    if not rows:
        return None
    if conn.dialect.name == "postgresql":
        return _insert_postgresql(conn, rows)
    return _insert_sqlite(conn, rows)


def _driver(conn: Connection) -> Any:
    """The database driver's own connection (sqlite3's or psycopg's)."""
    driver = conn.connection.driver_connection
    assert driver is not None  # None only once the connection is closed or invalidated
    return driver


def _insert_sqlite(conn: Connection, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
    # The write transaction (BEGIN IMMEDIATE) holds SQLite's only write lock, so every row
    # above the current highest key is one this statement inserted.
    cur = _driver(conn).cursor()
    before = cur.execute("SELECT coalesce(max(pk), 0) FROM events").fetchone()[0]
    cur.executemany(
        f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (source, event_id) DO NOTHING",
        rows,
    )
    inserted = cur.execute("SELECT count(*) FROM events WHERE pk > ?", (before,)).fetchone()[0]
    if inserted == len(rows):
        return None
    return set(
        cur.execute("SELECT source, event_id FROM events WHERE pk > ?", (before,)).fetchall()
    )


def _insert_postgresql(conn: Connection, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
    # COPY into a per-session staging table, then one short INSERT … SELECT: far cheaper than
    # a statement with thousands of placeholders. Sorting gives every writer the same lock
    # order on the unique index, so concurrent batches cannot deadlock on shared ids.
    cur = _driver(conn).cursor()
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS events_in (source text, event_id text, type text, subject "
        "text, "
        "time_us bigint, data text, received_us bigint) ON COMMIT DELETE ROWS"
    )
    with cur.copy(f"COPY events_in ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(
        f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM events_in "
        'ORDER BY source COLLATE "C", event_id COLLATE "C" '
        "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
    )
    new = set(cur.fetchall())
    cur.execute("TRUNCATE events_in")
    return None if len(new) == len(rows) else new


def exists(conn: Connection, source: str, event_id: str) -> bool:
    return (
        conn.execute(
            select(events.c.pk).where(events.c.source == source, events.c.event_id == event_id)
        ).first()
        is not None
    )


def stored(conn: Connection, source: str, event_id: str) -> Any:
    """The event with this identity (subject, type, time_us, data, received_us), or None."""
    e = events.c
    return conn.execute(
        select(e.subject, e.type, e.time_us, e.data, e.received_us).where(
            e.source == source, e.event_id == event_id
        )
    ).first()


def ids_stored_with(
    conn: Connection, source: str, subject: str, type_: str, time_us: int, received_us: int
) -> list[str]:
    """The ids of one source's events of one subject and type, stamped at one instant and
    received at one instant: those one batch stored together."""
    e = events.c
    return list(
        conn.execute(
            select(e.event_id).where(
                e.subject == subject,
                e.type == type_,
                e.time_us == time_us,
                e.source == source,
                e.received_us == received_us,
            )
        ).scalars()
    )


def of_customer(conn: Connection, customer: str, type_: str, lo: int, hi: int) -> list[SqlRow[Any]]:
    """One customer's events of one type stamped in [lo, hi): time_us, source, event_id, data."""
    e = events.c
    return list(
        conn.execute(
            select(e.time_us, e.source, e.event_id, e.data).where(
                e.subject == customer, e.type == type_, e.time_us >= lo, e.time_us < hi
            )
        )
    )


def of_type_after(conn: Connection, type_: str, after_pk: int, limit: int) -> list[SqlRow[Any]]:
    """Events of one type in storage order after `after_pk`, `limit` at most: pk, subject,
    time_us, source, event_id, data."""
    e = events.c
    return list(
        conn.execute(
            select(e.pk, e.subject, e.time_us, e.source, e.event_id, e.data)
            .where(e.type == type_, e.pk > after_pk)
            .order_by(e.pk)
            .limit(limit)
        )
    )


def earliest_times(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the instant of its earliest event (customers with none left out), in one
    statement. The customer's event types are found by skipping through the (subject, type,
    time) index, then each type's earliest instant is one seek: the cost grows with the
    customers and their types, not with their events."""
    names = sorted(set(customers))
    if not names:
        return {}
    param: str | list[str] = names
    given = "SELECT unnest(CAST(:names AS text[])) AS subject"
    if conn.dialect.name == "sqlite":
        given = "SELECT value AS subject FROM json_each(:names)"
        param = orjson.dumps(names).decode()
    rows = conn.execute(
        text(
            "WITH RECURSIVE kinds(subject, type) AS ("
            " SELECT c.subject, (SELECT min(e.type) FROM events e WHERE e.subject = c.subject)"
            f" FROM ({given}) AS c"
            " UNION ALL"
            " SELECT k.subject, (SELECT min(e.type) FROM events e"
            " WHERE e.subject = k.subject AND e.type > k.type)"
            " FROM kinds k WHERE k.type IS NOT NULL"
            ") SELECT k.subject, min((SELECT min(e.time_us) FROM events e"
            " WHERE e.subject = k.subject AND e.type = k.type))"
            " FROM kinds k WHERE k.type IS NOT NULL GROUP BY k.subject"
        ),
        {"names": param},
    )
    return {subject: first for subject, first in rows}


def last_received(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last event stamped in [lo, hi) was received."""
    e = events.c
    return conn.execute(
        select(func.max(e.received_us)).where(
            e.subject == customer, e.time_us >= lo, e.time_us < hi
        )
    ).scalar()


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many events each customer has (customers with none left out)."""
    return bulk.count_by(conn, events.c.subject, customers)


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
