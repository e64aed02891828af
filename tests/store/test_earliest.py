"""Where each customer's billing starts, read for many customers at once.

The finalizer's first pass needs, for every customer never finalized, the earliest instant of
its events, seat and plan changes and grants. The events' one is found by skipping through
the (subject, type, time) index type by type; here it must equal the plain minimum, whatever
the types, their order and the customers without events. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from quotameter.events import service as event_log
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import events

CUSTOMERS = ["a", "b", "c", "d/é"]
event = st.tuples(
    st.sampled_from(CUSTOMERS[:3]),
    st.sampled_from(["m", "x", "session.created", "z", "ä"]),
    st.integers(-(2**40), 2**40),
)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stored=st.lists(event, max_size=30))
def test_each_customers_earliest_event_is_the_plain_minimum(
    engine: Engine, stored: list[tuple[str, str, int]]
) -> None:
    rows: list[Any] = [
        ("src", f"e{i}", type_, subject, t, "{}", 0) for i, (subject, type_, t) in enumerate(stored)
    ]
    with unit_of_work(engine) as conn:
        conn.execute(delete(events))
        if rows:
            event_log.insert_new(conn, rows)
    with engine.connect() as conn:
        found = event_log.earliest_times(conn, CUSTOMERS)
        assert event_log.earliest_times(conn, []) == {}
    expected: dict[str, int] = {}
    for subject, _, t in stored:
        expected[subject] = min(t, expected.get(subject, t))
    assert found == expected
