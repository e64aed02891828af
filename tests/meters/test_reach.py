"""What a re-merge reads of the merged spans: along the primary key, whatever the statistics.

For every merge key a batch touches, a re-merge reads the merged span starting last before
its window and those starting inside it. Read any other way (the customer's merged spans
filtered one by one), that read costs more with every span of the period already stored.
PostgreSQL picks its plan from the table's statistics, which a new database (or one that
autovacuum has not analyzed yet) lacks: the read must go along the primary key with
statistics and without. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text

from quotameter.meters import repository as repo
from quotameter.store import bulk
from quotameter.store.engine import unit_of_work

KEYS = [f"u{n}" for n in range(400)]
SPANS = 60  # merged spans per merge key, each 60 s long, 60 s apart
MINUTE = 60_000_000


def _store(conn: Connection) -> None:
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


def _plan(conn: Connection, windows: dict[repo.MergeId, tuple[int, int]]) -> str:
    postgresql = conn.dialect.name == "postgresql"
    columns = (("i", "int"), ("meter", "text"), ("customer", "text"), ("merge_key", "text"))
    sql = repo.reach_sql(repo.json_rows(conn, *columns, ("lo", "int"), ("hi", "int")), postgresql)
    rows = [[i, *mid, *windows[mid]] for i, mid in enumerate(windows)]
    explain = "EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN "
    plan = conn.execute(text(explain + sql), {"k": repo.json_param(rows)}).all()
    return "\n".join(str(row[0] if postgresql else row[-1]) for row in plan)


def _reads_of_merged_spans(plan: str, postgresql: bool) -> list[str]:
    """The plan's lines that read merged_spans (SQLite names it by its aliases, m and x)."""
    if postgresql:
        return [line for line in plan.splitlines() if " on merged_spans " in line]
    return [
        line
        for line in plan.splitlines()
        if line.split()[:1] in (["SCAN"], ["SEARCH"]) and line.split()[1] in ("m", "x")
    ]


def _along_primary_key(read: str) -> bool:
    return ("Index" in read and "pk_merged_spans" in read) or "USING PRIMARY KEY" in read


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_remerge_reads_the_merged_spans_along_the_primary_key(engine: Engine) -> None:
    with unit_of_work(engine) as conn:
        _store(conn)
    for analyzed in (False, True):
        # Each key gains a closed span [21 min, 22 min): it joins [20, 21) and [22, 23).
        windows = {("media", "acme", key): (21 * MINUTE, 22 * MINUTE) for key in KEYS}
        with unit_of_work(engine) as conn:
            if analyzed:
                conn.execute(text("ANALYZE merged_spans"))
            plan = _plan(conn, windows)
            reads = _reads_of_merged_spans(plan, conn.dialect.name == "postgresql")
            assert reads and all(_along_primary_key(read) for read in reads), plan
            repo.remerge(conn, windows, {mid: [(21 * MINUTE, 22 * MINUTE)] for mid in windows}, ())
            for key in KEYS:
                assert repo.merged_overlapping(
                    conn, "media", "acme", key, 19 * MINUTE + 1, 23 * MINUTE
                ) == [(20 * MINUTE, 23 * MINUTE)]
            conn.rollback()
