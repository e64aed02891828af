"""All SQL for customers' history: seats, plans, settings."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.tables import customer_settings, plan_changes, seat_changes


def seats_at(conn: Connection, customer: str, t: int) -> int | None:
    s = seat_changes.c
    return conn.execute(select(s.seats).where(s.customer == customer, s.effective_us <= t)
                        .order_by(s.effective_us.desc(), s.id.desc()).limit(1)).scalar()


def max_seats_between(conn: Connection, customer: str, after: int, upto: int) -> int | None:
    s = seat_changes.c
    return conn.execute(select(func.max(s.seats)).where(
        s.customer == customer, s.effective_us > after, s.effective_us <= upto)).scalar()


def add_seats(conn: Connection, customer: str, seats: int, effective_us: int, recorded_us: int) -> None:
    conn.execute(insert(seat_changes).values(customer=customer, seats=seats, effective_us=effective_us,
                                             recorded_us=recorded_us))


def plan_at(conn: Connection, customer: str, t: int) -> str | None:
    p = plan_changes.c
    return conn.execute(select(p.plan).where(p.customer == customer, p.effective_us <= t)
                        .order_by(p.effective_us.desc(), p.id.desc()).limit(1)).scalar()


def plan_history(conn: Connection, customer: str) -> list:
    p = plan_changes.c
    return list(conn.execute(select(p.plan, p.effective_us, p.reason).where(p.customer == customer)
                             .order_by(p.effective_us, p.id)))


def add_plan(conn: Connection, customer: str, plan: str, effective_us: int, reason: str, recorded_us: int) -> None:
    conn.execute(insert(plan_changes).values(customer=customer, plan=plan, effective_us=effective_us,
                                             reason=reason, recorded_us=recorded_us))


def settings(conn: Connection, customer: str) -> dict[str, Any]:
    raw = conn.execute(select(customer_settings.c.settings)
                       .where(customer_settings.c.customer == customer)).scalar()
    return orjson.loads(raw) if raw else {}


def save_settings(conn: Connection, customer: str, values: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    doc = orjson.dumps(values).decode()
    stmt = dialect.insert(customer_settings).values(customer=customer, settings=doc)
    conn.execute(stmt.on_conflict_do_update(index_elements=["customer"], set_={"settings": doc}))
