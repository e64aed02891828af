"""All SQL for notices: fired levels, the outbox, wake-ups."""

from __future__ import annotations

from decimal import Decimal

import orjson
from sqlalchemy import Connection, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.tables import fired, notices, pending_evaluations, wakeups


def _dialect(conn: Connection):  # type: ignore[no-untyped-def]
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def fired_keys(conn: Connection, customer: str, feature: str, period_start_us: int) -> dict[str, int]:
    """The levels fired in the period, each with the instant it fired at."""
    f = fired.c
    rows = conn.execute(select(f.key, f.at_us).where(f.customer == customer, f.feature == feature,
                                                     f.period_start_us == period_start_us))
    return {key: at_us for key, at_us in rows}


def fire(conn: Connection, customer: str, feature: str, period_start_us: int, key: str, at_us: int) -> bool:
    """Mark a level as fired; False if it already was (by this or another process)."""
    stmt = _dialect(conn).insert(fired).values(customer=customer, feature=feature, period_start_us=period_start_us,
                                               key=key, at_us=at_us).on_conflict_do_nothing()
    return conn.execute(stmt.returning(fired.c.key)).first() is not None


def rearm(conn: Connection, customer: str, feature: str, period_start_us: int, key: str) -> bool:
    f = fired.c
    return bool(conn.execute(delete(fired).where(f.customer == customer, f.feature == feature,
                                                 f.period_start_us == period_start_us, f.key == key)).rowcount)


def record(conn: Connection, *, customer: str, feature: str | None, type: str, percent: Decimal | None,
           period: tuple[int, int] | None, at_us: int, recipients: dict, payload: dict, recorded_us: int) -> int:
    return int(conn.execute(insert(notices).values(
        customer=customer, feature=feature, type=type, percent=percent,
        period_start_us=period[0] if period else None, period_end_us=period[1] if period else None,
        at_us=at_us, recipients=orjson.dumps(recipients).decode(), payload=orjson.dumps(payload).decode(),
        status="pending", attempts=0, next_attempt_us=recorded_us, recorded_us=recorded_us,
    ).returning(notices.c.id)).scalar_one())


def listing(conn: Connection, customer: str, after_id: int = 0, limit: int = 500) -> list:
    n = notices.c
    return list(conn.execute(select(notices).where(n.customer == customer, n.id > after_id)
                             .order_by(n.id).limit(limit)))


def set_wakeup(conn: Connection, customer: str, feature: str, due_us: int | None) -> None:
    w = wakeups.c
    conn.execute(delete(wakeups).where(w.customer == customer, w.feature == feature))
    if due_us is not None:
        conn.execute(insert(wakeups).values(customer=customer, feature=feature, due_us=due_us))


def due_wakeups(conn: Connection, now_us: int, limit: int = 100) -> list:
    w = wakeups.c
    return list(conn.execute(select(w.customer, w.feature, w.due_us).where(w.due_us <= now_us)
                             .order_by(w.due_us).limit(limit)))


def next_wakeup(conn: Connection) -> int | None:
    from sqlalchemy import func

    return conn.execute(select(func.min(wakeups.c.due_us))).scalar()


def mark_pending(conn: Connection, customers: list[str], since_us: int) -> None:
    if customers:
        stmt = _dialect(conn).insert(pending_evaluations).on_conflict_do_nothing()
        conn.execute(stmt, [{"customer": c, "since_us": since_us} for c in sorted(customers)])


def is_pending(conn: Connection, customer: str) -> bool:
    return conn.execute(_IS_PENDING, {"c": customer}).first() is not None


_IS_PENDING = text("SELECT 1 FROM pending_evaluations WHERE customer = :c")


def take_pending(conn: Connection, customer: str | None, limit: int) -> list[str]:
    """Claim pending customers. PostgreSQL: the scheduler (no `customer`) skips the rows
    another evaluator holds; a read settling one customer waits for that evaluator instead,
    so that it then sees the notices it records."""
    p = pending_evaluations.c
    q = select(p.customer).order_by(p.since_us).limit(limit)
    if customer is not None:
        q = q.where(p.customer == customer)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=customer is None)
    names = list(conn.execute(q).scalars())
    if names:
        conn.execute(delete(pending_evaluations).where(p.customer.in_(names)))
    return names
