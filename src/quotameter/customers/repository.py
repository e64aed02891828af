"""All SQL for customers' history: seats, plans, settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Row, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.customers import state
from quotameter.store.tables import (
    api_keys,
    customer_settings,
    events,
    grants,
    invoices,
    notices,
    plan_changes,
    seat_changes,
)

# Balance reads run these on every check: plain prepared text, no expression building.
_SEATS_AT = text(
    "SELECT seats FROM seat_changes WHERE customer = :c AND effective_us <= :t "
    "ORDER BY effective_us DESC, id DESC LIMIT 1"
)
_MAX_SEATS = text(
    "SELECT max(seats) FROM seat_changes WHERE customer = :c AND effective_us > :a "
    "AND effective_us <= :b"
)
_PLAN_AT = text(
    "SELECT plan FROM plan_changes WHERE customer = :c AND effective_us <= :t "
    "ORDER BY effective_us DESC, id DESC LIMIT 1"
)
_SETTINGS = text("SELECT settings FROM customer_settings WHERE customer = :c")


def seats_at(conn: Connection, customer: str, t: int) -> int | None:
    return conn.execute(_SEATS_AT, {"c": customer, "t": t}).scalar()


def max_seats_between(conn: Connection, customer: str, after: int, upto: int) -> int | None:
    return conn.execute(_MAX_SEATS, {"c": customer, "a": after, "b": upto}).scalar()


def add_seats(
    conn: Connection, customer: str, seats: int, effective_us: int, recorded_us: int
) -> None:
    conn.execute(
        insert(seat_changes).values(
            customer=customer, seats=seats, effective_us=effective_us, recorded_us=recorded_us
        )
    )
    state.bump(conn, [(customer, effective_us)])


def plan_at(conn: Connection, customer: str, t: int) -> str | None:
    return conn.execute(_PLAN_AT, {"c": customer, "t": t}).scalar()


def plan_history(conn: Connection, customer: str) -> list[Row[Any]]:
    p = plan_changes.c
    return list(
        conn.execute(
            select(p.plan, p.effective_us, p.reason)
            .where(p.customer == customer)
            .order_by(p.effective_us, p.id)
        )
    )


def add_plan(
    conn: Connection, customer: str, plan: str, effective_us: int, reason: str, recorded_us: int
) -> None:
    conn.execute(
        insert(plan_changes).values(
            customer=customer,
            plan=plan,
            effective_us=effective_us,
            reason=reason,
            recorded_us=recorded_us,
        )
    )
    state.bump(conn, [(customer, effective_us)])


def settings(conn: Connection, customer: str) -> dict[str, Any]:
    raw = conn.execute(_SETTINGS, {"c": customer}).scalar()
    return orjson.loads(raw) if raw else {}


def save_settings(conn: Connection, customer: str, values: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    doc = orjson.dumps(values).decode()
    stmt = dialect.insert(customer_settings).values(customer=customer, settings=doc)
    conn.execute(stmt.on_conflict_do_update(index_elements=["customer"], set_={"settings": doc}))
    state.bump(conn, [(customer, 0)])


# What is recorded for a customer, by kind: the column naming the customer, and which rows count.
_RECORDS = (
    ("event", events.c.subject, ()),
    ("key", api_keys.c.customer, (api_keys.c.revoked_us.is_(None),)),
    ("invoice", invoices.c.customer, ()),
    ("grant", grants.c.customer, ()),
    ("seat change", seat_changes.c.customer, ()),
    ("plan change", plan_changes.c.customer, ()),
    ("notice", notices.c.customer, ()),
    ("settings change", customer_settings.c.customer, ()),
)
_CHUNK = 500  # names per IN list, well within every database's limit on bound parameters


def recorded(conn: Connection, customers: Sequence[str]) -> dict[str, dict[str, int]]:
    """For each customer, how many of each kind of record it has (kinds with none left out):
    events, active keys, invoices, grants, seat and plan changes, notices, settings changes."""
    out: dict[str, dict[str, int]] = {c: {} for c in customers}
    names = sorted(out)
    for kind, column, where in _RECORDS:
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            query = select(column, func.count()).where(column.in_(chunk), *where).group_by(column)
            for customer, count in conn.execute(query):
                out[customer][kind] = count
    return out
