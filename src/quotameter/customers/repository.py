"""All SQL for customers' history: seats, plans, settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Row, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.customers import state
from quotameter.store import bulk
from quotameter.store.tables import customer_settings, plan_changes, seat_changes

# Balance reads run these on every check: plain prepared text, no expression building.
_SEATS_AT = text(
    "SELECT seats FROM seat_changes WHERE customer = :c AND effective_us <= :t "
    "ORDER BY effective_us DESC, id DESC LIMIT 1"
)
_SETTINGS = text("SELECT settings FROM customer_settings WHERE customer = :c")
# A view of the customer (settings and plan) and its highest seat count in a period are
# read on every evaluation: one round trip each.
_VIEW_AT = text(
    "SELECT (SELECT settings FROM customer_settings WHERE customer = :c), "
    "(SELECT plan FROM plan_changes WHERE customer = :c AND effective_us <= :t "
    "ORDER BY effective_us DESC, id DESC LIMIT 1)"
)
_SEATS_THROUGH = text(
    "SELECT (SELECT seats FROM seat_changes WHERE customer = :c AND effective_us <= :a "
    "ORDER BY effective_us DESC, id DESC LIMIT 1), "
    "(SELECT max(seats) FROM seat_changes WHERE customer = :c AND effective_us > :a "
    "AND effective_us <= :b)"
)


def seats_at(conn: Connection, customer: str, t: int) -> int | None:
    return conn.execute(_SEATS_AT, {"c": customer, "t": t}).scalar()


def seats_through(
    conn: Connection, customer: str, start: int, upto: int
) -> tuple[int | None, int | None]:
    """The recorded seat count in force at `start` and the highest recorded after it up to
    `upto` (None where nothing is recorded), in one query."""
    row = conn.execute(_SEATS_THROUGH, {"c": customer, "a": start, "b": upto}).one()
    return row[0], row[1]


def add_seats(
    conn: Connection, customer: str, seats: int, effective_us: int, recorded_us: int
) -> None:
    conn.execute(
        insert(seat_changes).values(
            customer=customer, seats=seats, effective_us=effective_us, recorded_us=recorded_us
        )
    )
    state.bump(conn, [(customer, effective_us)])


_PLANS_AT = text(
    "SELECT customer, plan FROM plan_changes WHERE effective_us <= :t "
    "ORDER BY customer, effective_us, id"
)


def plans_at(conn: Connection, t: int) -> dict[str, str]:
    """Every customer's recorded plan in force at `t` (customers with none left out), in one
    query: the last of each customer's rows in order wins."""
    return {row.customer: row.plan for row in conn.execute(_PLANS_AT, {"t": t})}


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


def settings_and_plan_at(
    conn: Connection, customer: str, t: int
) -> tuple[dict[str, Any], str | None]:
    """The customer's recorded settings and the recorded plan in force at `t` (None if none),
    in one query."""
    raw, plan = conn.execute(_VIEW_AT, {"c": customer, "t": t}).one()
    return (orjson.loads(raw) if raw else {}), plan


def save_settings(conn: Connection, customer: str, values: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    doc = orjson.dumps(values).decode()
    stmt = dialect.insert(customer_settings).values(customer=customer, settings=doc)
    conn.execute(stmt.on_conflict_do_update(index_elements=["customer"], set_={"settings": doc}))
    state.bump(conn, [(customer, 0)])


# What is recorded for a customer, by kind: the column naming the customer, and which rows count.
def recorded(conn: Connection, customers: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per kind (seat change, plan change, settings change), how many each customer has."""
    return {
        "seat change": bulk.count_by(conn, seat_changes.c.customer, customers),
        "plan change": bulk.count_by(conn, plan_changes.c.customer, customers),
        "settings change": bulk.count_by(conn, customer_settings.c.customer, customers),
    }


def first_changes(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the earliest instant a seat or plan change of it takes effect (customers
    with none left out)."""
    out: dict[str, int] = {}
    for t in (seat_changes, plan_changes):
        for customer, first in bulk.min_by(conn, t.c.customer, t.c.effective_us, customers).items():
            out[customer] = min(first, out.get(customer, first))
    return out


def last_recorded_change(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last seat or plan change effective in [lo, hi) was recorded."""
    found = [
        conn.execute(
            select(func.max(t.c.recorded_us)).where(
                t.c.customer == customer, t.c.effective_us >= lo, t.c.effective_us < hi
            )
        ).scalar()
        for t in (seat_changes, plan_changes)
    ]
    values = [v for v in found if v is not None]
    return max(values) if values else None


def plan_changes_between(conn: Connection, customer: str, after_us: int, upto_us: int) -> list[Any]:
    """Plan changes effective in (after, upto], in order."""
    p = plan_changes.c
    return list(
        conn.execute(
            select(p.plan, p.effective_us, p.reason)
            .where(p.customer == customer, p.effective_us > after_us, p.effective_us <= upto_us)
            .order_by(p.effective_us, p.id)
        )
    )
