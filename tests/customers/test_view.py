"""A customer as it stood at an instant, read in one statement.

Every evaluation of a customer reads its view (contact settings and the plan in force) and,
for per-seat allowances, its highest seat count in the period. On PostgreSQL each statement
is a round trip, and an evaluation reads the view several times: each read is one statement,
and it must give what the recorded history says at every instant.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import validate_catalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.store.engine import unit_of_work
from support import fresh_catalog, statements

CATALOG = {
    "meters": {"calls": {"event_type": "call", "aggregation": "count"}},
    "plans": {
        "small": {"entitlements": {"calls": {"meter": "calls", "allowance": {"per_seat": 5}}}},
        "large": {"entitlements": {"calls": {"meter": "calls", "allowance": {"per_seat": 9}}}},
    },
    "customers": {"c": {"plan": "small", "seats": 2}, "d": {"plan": "small", "seats": 4}},
}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_view_and_the_highest_seats_are_one_statement_each_at_every_instant(
    engine: Engine,
) -> None:
    fresh_catalog(engine, CATALOG)
    catalog = catalogs.LoadedCatalog(1, validate_catalog(CATALOG))
    with unit_of_work(engine) as conn:
        ctx = Context(conn, catalog)
        customers.change(
            ctx,
            "c",
            seats=6,
            settings={"admins": ["a@c.example"]},
            effective_us=100,
            recorded_us=1,
        )
        customers.change(ctx, "c", seats=3, settings={}, effective_us=200, recorded_us=1)
        customers.change_plan(ctx, "c", "large", 150, 1)
    expected_plan = {0: "small", 149: "small", 150: "large", 10_000: "large"}
    # (start, at) -> the highest count in force from start up to at
    expected_seats = {(0, 99): 2, (0, 100): 6, (150, 300): 6, (200, 300): 3, (250, 260): 3}
    with engine.connect() as conn, statements(engine) as seen:
        ctx = Context(conn, catalog)
        for at_us, plan in expected_plan.items():
            del seen[:]
            view = customers.view(ctx, "c", at_us)
            assert (view.plan_name, view.spec.admins, len(seen)) == (plan, ["a@c.example"], 1)
        for (start, at_us), seats in expected_seats.items():
            del seen[:]
            assert (customers.highest_seats(ctx, "c", start, at_us), len(seen)) == (seats, 1)
        # Nothing recorded: the catalog's values.
        del seen[:]
        view = customers.view(ctx, "d", 500)
        assert (view.plan_name, view.spec.admins, customers.highest_seats(ctx, "d", 0, 500)) == (
            "small",
            [],
            4,
        )
        assert len(seen) == 2
        # A what-if pricing names its plan: only the settings are read.
        del seen[:]
        pretend = Context(conn, catalog, pretend={"c": "small"})
        assert customers.view(pretend, "c", 10_000).plan_name == "small"
        assert len(seen) == 1
