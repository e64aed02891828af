"""A batch's reads per stream, merge key and gauge go along their index, whatever the statistics.

A batch reads back, for the streams, merge keys and gauges it touches, a few rows each: a
stream's latest span and its spans from where a late event replays it, the merged spans and
stream spans a re-merge reaches, a gauge's points after a late change. Read any other way
(every row of the customer, filtered one by one), such a read costs more with every row of
the period already stored. PostgreSQL picks its plans from the tables' statistics, which a
new database (or one that autovacuum has not analyzed yet) lacks: each of these reads must
go along its index with statistics and without. The statements are caught as the
repository runs them, and explained. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from quotameter.meters import repository as repo
from quotameter.meters.model import GaugeChange
from quotameter.meters.spans import Span
from quotameter.store import bulk
from quotameter.store.engine import unit_of_work

KEYS = [f"u{n}" for n in range(400)]
SPANS = 60  # spans per merge key (and per stream), each 60 s long, 60 s apart
MINUTE = 60_000_000


@contextmanager
def explained(conn: Connection, plans: list[str]) -> Iterator[None]:
    """Append to `plans` the plan of every query `conn` runs meanwhile."""
    postgresql = conn.dialect.name == "postgresql"

    def explain(
        _conn: Any, cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("WITH", "SELECT")):
            cursor.execute(
                ("EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN ") + statement, parameters
            )
            plans.append("\n".join(str(row[0] if postgresql else row[-1]) for row in cursor))

    event.listen(conn, "before_cursor_execute", explain)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", explain)


def reads_of(conn: Connection, table: str, plans: list[str], aliases: tuple[str, ...]) -> list[str]:
    """The plans' lines that read `table` (SQLite names it by its aliases in the query)."""
    lines = [line for plan in plans for line in plan.splitlines()]
    if conn.dialect.name == "postgresql":
        return [line for line in lines if f" on {table} " in line]
    return [
        line
        for line in lines
        if line.split()[:1] in (["SCAN"], ["SEARCH"]) and line.split()[1] in aliases
    ]


def along(index: str, read: str) -> bool:
    """Whether a read goes along `index`, named as on PostgreSQL. On SQLite the primary key
    pk_<table> is the table itself (without rowid: PRIMARY KEY; the rowid: INTEGER PRIMARY
    KEY) or its automatic index."""
    if "Index" in read:
        return f"using {index} " in read
    if index.startswith("pk_"):
        own = ("USING PRIMARY KEY", "USING INTEGER PRIMARY KEY", f"sqlite_autoindex_{index[3:]}_")
        return any(name in read for name in own)
    return f"USING INDEX {index} " in read or f"USING COVERING INDEX {index} " in read


def _merged(conn: Connection) -> None:
    bulk.insert(
        conn,
        "merged_spans",
        ("meter", "customer", "merge_key", "start_us", "end_us"),
        ("text", "text", "text", "bigint", "bigint"),
        [
            ("media", "acme", key, 2 * n * MINUTE, (2 * n + 1) * MINUTE)
            for key in KEYS
            for n in range(SPANS)
        ],
    )


def _streams(conn: Connection) -> None:
    repo.replace_spans(
        conn,
        (),
        (),
        [
            repo.span_row(
                "media",
                "acme",
                f"{key}\x01mic",
                key,
                Span(2 * n * MINUTE, (2 * n + 1) * MINUTE, (2 * n + 1) * MINUTE),
                explicit=False,
            )
            for key in KEYS
            for n in range(SPANS)
        ],
    )


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_remerge_reads_the_merged_spans_along_the_primary_key(engine: Engine) -> None:
    with unit_of_work(engine) as conn:
        _merged(conn)
    for analyzed in (False, True):
        # Each key gains a closed span [21 min, 22 min): it joins [20, 21) and [22, 23).
        windows = {("media", "acme", key): (21 * MINUTE, 22 * MINUTE) for key in KEYS}
        plans: list[str] = []
        with unit_of_work(engine) as conn:
            if analyzed:
                conn.execute(text("ANALYZE merged_spans"))
            with explained(conn, plans):
                repo.remerge(
                    conn, windows, {mid: [(21 * MINUTE, 22 * MINUTE)] for mid in windows}, ()
                )
            reads = reads_of(conn, "merged_spans", plans, ("m", "x"))
            assert reads and all(along("pk_merged_spans", read) for read in reads), plans
            for key in KEYS:
                assert repo.merged_overlapping(
                    conn, "media", "acme", key, 19 * MINUTE + 1, 23 * MINUTE
                ) == [(20 * MINUTE, 23 * MINUTE)]
            conn.rollback()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_replay_reads_each_streams_spans_along_the_stream_index(engine: Engine) -> None:
    with unit_of_work(engine) as conn:
        _streams(conn)
    for analyzed in (False, True):
        # A late event at 41 min: each stream replays from its span starting at 40 min.
        late = {("media", "acme", f"{key}\x01mic"): (41 * MINUTE, 0) for key in KEYS}
        plans: list[str] = []
        with unit_of_work(engine) as conn:
            if analyzed:
                conn.execute(text("ANALYZE stream_spans"))
            with explained(conn, plans):
                found = repo.spans_since(conn, late)
            reads = reads_of(conn, "stream_spans", plans, ("s", "x"))
            assert reads and all(along("ix_stream_spans_stream", read) for read in reads), plans
            for sid in late:
                since, rows = found[sid]
                assert since == 40 * MINUTE
                assert sorted((start, end) for _, start, end in rows) == [
                    (2 * n * MINUTE, (2 * n + 1) * MINUTE) for n in range(20, SPANS)
                ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_batch_reads_its_streams_latest_rows_and_a_merge_keys_spans_along_their_indexes(
    engine: Engine,
) -> None:
    with unit_of_work(engine) as conn:
        _streams(conn)
    streams = [("media", "acme", f"{key}\x01mic") for key in KEYS]
    for analyzed in (False, True):
        with unit_of_work(engine) as conn:
            if analyzed:
                conn.execute(text("ANALYZE stream_spans"))
            latest: list[str] = []
            with explained(conn, latest):
                rows = repo.latest_rows(conn, streams)
            assert {(row.start, row.end) for row in rows.values()} == {
                (2 * (SPANS - 1) * MINUTE, (2 * SPANS - 1) * MINUTE)
            }
            reads = reads_of(conn, "stream_spans", latest, ("s", "x"))
            assert reads and all(
                along("ix_stream_spans_stream", read) or along("pk_stream_spans", read)
                for read in reads
            ), latest
            # A span of each merge key was shortened: its closed spans are read again.
            windows = {("media", "acme", key): (20 * MINUTE, 22 * MINUTE) for key in KEYS}
            merged: list[str] = []
            with explained(conn, merged):
                repo.remerge(conn, windows, {}, set(windows))
            reads = reads_of(conn, "stream_spans", merged, ("s",))
            assert reads and all(along("ix_stream_spans_merge_key", read) for read in reads), merged
            for key in KEYS:
                assert repo.merged_overlapping(conn, "media", "acme", key, 0, 23 * MINUTE) == [
                    (20 * MINUTE, 21 * MINUTE),
                    (22 * MINUTE, 23 * MINUTE),
                ]
            conn.rollback()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_gauges_later_points_are_read_along_its_key(engine: Engine) -> None:
    customers = [f"c{n}" for n in range(400)]
    with unit_of_work(engine) as conn:
        repo.add_gauge_changes(
            conn,
            {
                ("volume", c): [
                    GaugeChange(n * MINUTE, f"{n:04d}", None, Decimal(1)) for n in range(SPANS)
                ]
                for c in customers
            },
        )
    for analyzed in (False, True):
        with unit_of_work(engine) as conn:
            if analyzed:
                conn.execute(text("ANALYZE gauge_points"))
            plans: list[str] = []
            # A late delta of 10 at 30.5 min: every later point of each gauge is re-levelled.
            with explained(conn, plans):
                repo.add_gauge_changes(
                    conn,
                    {
                        ("volume", c): [GaugeChange(30 * MINUTE + 1, "late", None, Decimal(10))]
                        for c in customers
                    },
                )
            reads = reads_of(conn, "gauge_points", plans, ("g",))
            assert reads and all(along("pk_gauge_points", read) for read in reads), plans
            assert repo.gauge_level_before(conn, "volume", "c7", 31 * MINUTE) == 41
            assert repo.gauge_level_before(conn, "volume", "c7", 30 * MINUTE + 1) == 31
            conn.rollback()
