"""The merged spans of one user that an open stream may join, read without its history.

A duration read merges each user's open streams with the closed merged spans they touch.
Those are the merged spans with end >= lo and start <= hi; read as that filter along the
(meter, customer, user, start) key, the read went through every merged span of the user
that starts before hi, months of them. It is two seeks now: the span starting last before
lo, and those starting in [lo, hi]. Here it must return exactly what the filter returns
(SQLite and PostgreSQL), and on SQLite its cost, counted in the virtual machine's steps,
must not grow with the spans of the user before the window.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from quotameter.meters import repository as repo
from quotameter.store import bulk
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import merged_spans
from support import statements

# Disjoint spans of one user (gaps of at least 1): (gap before, length) pairs.
spans = st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), max_size=12)


def _store(engine: Engine, rows: list[tuple[str, int, int]]) -> None:
    """Replace every merged span with these (user, start, end) of meter m, customer acme."""
    with unit_of_work(engine) as conn:
        conn.execute(delete(merged_spans))
        bulk.insert(
            conn,
            "merged_spans",
            ("meter", "customer", "merge_key", "start_us", "end_us"),
            ("text", "text", "text", "bigint", "bigint"),
            [("m", "acme", user, start, end) for user, start, end in rows],
        )


def _laid_out(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, t = [], -100
    for gap, length in pairs:
        out.append((t + gap, t + gap + length))
        t += gap + length
    return out


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pairs=spans, lo=st.integers(-120, 200), width=st.integers(0, 60))
def test_the_merged_spans_touching_a_window_are_those_the_filter_finds(
    engine: Engine, pairs: list[tuple[int, int]], lo: int, width: int
) -> None:
    stored, hi = _laid_out(pairs), lo + width
    _store(engine, [("u", s, e) for s, e in stored] + [("v", s - 1, e + 1) for s, e in stored])
    with engine.connect() as conn:
        found = sorted(tuple(r) for r in repo.merged_overlapping(conn, "m", "acme", "u", lo, hi))
    assert found == [(s, e) for s, e in stored if e >= lo and s <= hi]


def _steps(engine: Engine, old: int) -> int:
    """SQLite's virtual machine steps (in hundreds) for one read, with `old` merged spans of
    the user before the window."""
    _store(engine, [("u", 10 * n - 10 * old, 10 * n - 10 * old + 5) for n in range(old + 5)])
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.set_progress_handler(count, 100)  # type: ignore[attr-defined]
        try:
            found = repo.merged_overlapping(conn, "m", "acme", "u", 0, 40)
        finally:
            raw.set_progress_handler(None, 0)  # type: ignore[attr-defined]
    assert sorted(tuple(r) for r in found) == [(10 * n, 10 * n + 5) for n in range(5)]
    return steps


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_read_does_not_grow_with_the_users_history(engine: Engine) -> None:
    assert _steps(engine, 20_000) <= _steps(engine, 10) + 2


def _rounded(length: int, unit: int, mode: str) -> int:
    if mode == "ceil":
        return -(-length // unit) * unit
    if mode == "floor":
        return length // unit * unit
    return (length + unit // 2) // unit * unit


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("mode", ["ceil", "floor", "half_up"])
def test_the_rounded_total_of_any_window_is_one_statement_and_exact(
    engine: Engine, mode: str
) -> None:
    """An open period's total is read at a new instant on every evaluation: the instants are
    bound, so every window runs the same prepared statement (written into the text, each
    window was a statement to compile and prepare again), and the sums stay exact."""
    stored = [(0, 7), (10, 25), (30, 31), (40, 100)]
    _store(engine, [("u", s, e) for s, e in stored])
    windows = [(0, 100), (5, 35), (12, 41), (-3, 1_000), (26, 29)]
    with engine.connect() as conn, statements(engine) as seen:
        totals = [repo.merged_total(conn, "m", "acme", lo, hi, 4, mode) for lo, hi in windows]
    assert totals == [
        sum(_rounded(min(e, hi) - max(s, lo), 4, mode) for s, e in stored if e > lo and s < hi)
        for lo, hi in windows
    ]
    assert len(set(seen)) == 1 and len(seen) == len(windows)
