"""All SQL for invoices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.engine import lock_keys
from quotameter.store.tables import events, grants, invoices, plan_changes, seat_changes


# On PostgreSQL a writer (events, changes) reads what is finalized and writes in the same
# transaction; finalization computes the invoice and stores it in another. Without a lock an
# event could be checked before an invoice commits and stored after it was computed: in no
# invoice and never refused. Writers hold the customer's lock shared (they do not exclude
# each other), finalization holds it exclusive, so each sees the other's commit.
# SQLite serializes all write transactions already.
def hold_open(conn: Connection, customers: Sequence[str]) -> None:
    """Keep the customers' periods from being finalized until this transaction ends."""
    lock_keys(conn, (f"invoice\x01{c}" for c in customers), shared=True)


def hold_closing(conn: Connection, customer: str) -> None:
    """Wait for the customer's writers in flight, and keep new ones out until this transaction ends."""
    lock_keys(conn, [f"invoice\x01{customer}"])


def add(conn: Connection, row: dict[str, Any]) -> int | None:
    """Insert a finalized invoice; its id, or None when the period was already finalized
    (by this process or another: the unique key on (customer, period_start_us) decides)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(invoices)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["customer", "period_start_us"])
        .returning(invoices.c.id)
    )
    return conn.execute(stmt).scalar()


def get(conn: Connection, customer: str, invoice_id: int) -> Any:
    i = invoices.c
    return conn.execute(select(invoices).where(i.customer == customer, i.id == invoice_id)).first()


def for_period(conn: Connection, customer: str, period_start_us: int) -> Any:
    i = invoices.c
    return conn.execute(
        select(invoices).where(i.customer == customer, i.period_start_us == period_start_us)
    ).first()


def containing(conn: Connection, customer: str, t_us: int) -> Any:
    """The finalized invoice whose period contains `t_us`, if any."""
    i = invoices.c
    return conn.execute(
        select(invoices).where(
            i.customer == customer, i.period_start_us <= t_us, i.period_end_us > t_us
        )
    ).first()


def listing(conn: Connection, customer: str) -> list[Any]:
    i = invoices.c
    return list(
        conn.execute(select(invoices).where(i.customer == customer).order_by(i.period_start_us))
    )


_THROUGH_ONE = text("SELECT max(period_end_us) FROM invoices WHERE customer = :c")


def finalized_through(conn: Connection, customer: str) -> int | None:
    """The end of the customer's last finalized period: nothing before it may change."""
    return conn.execute(_THROUGH_ONE, {"c": customer}).scalar()


def finalized_through_many(conn: Connection, customers: Sequence[str] | None) -> dict[str, int]:
    """`finalized_through` of several customers (None: all) in one query."""
    i = invoices.c
    query = select(i.customer, func.max(i.period_end_us)).group_by(i.customer)
    if customers is not None:
        if not customers:
            return {}
        query = query.where(i.customer.in_(sorted(set(customers))))
    return {row[0]: row[1] for row in conn.execute(query)}


def earliest_activity(conn: Connection, customer: str) -> int | None:
    """The earliest instant anything is recorded for the customer: an event, a seat or plan
    change, a grant. Billing starts with the period that contains it."""
    candidates = [
        select(func.min(events.c.time_us)).where(events.c.subject == customer),
        select(func.min(seat_changes.c.effective_us)).where(seat_changes.c.customer == customer),
        select(func.min(plan_changes.c.effective_us)).where(plan_changes.c.customer == customer),
        select(func.min(grants.c.effective_us)).where(grants.c.customer == customer),
    ]
    found = [conn.execute(q).scalar() for q in candidates]
    values = [v for v in found if v is not None]
    return min(values) if values else None


def last_change_us(conn: Connection, customer: str, start_us: int, end_us: int) -> int | None:
    """When anything stamped in [start, end) was last recorded for the customer: an event
    received, a seat or plan change or a grant effective there. A period is due a grace
    window after this (and after its end)."""
    candidates = [
        select(func.max(events.c.received_us)).where(
            events.c.subject == customer, events.c.time_us >= start_us, events.c.time_us < end_us
        ),
        *(
            select(func.max(t.c.recorded_us)).where(
                t.c.customer == customer, t.c.effective_us >= start_us, t.c.effective_us < end_us
            )
            for t in (seat_changes, plan_changes, grants)
        ),
    ]
    found = [v for v in (conn.execute(q).scalar() for q in candidates) if v is not None]
    return max(found) if found else None


def first_catalog_us(conn: Connection) -> int | None:
    return conn.execute(text("SELECT min(applied_us) FROM catalogs")).scalar()


def topups(conn: Connection, customer: str, start_us: int, upto_us: int) -> list[Any]:
    """Top-ups effective in [start, upto]."""
    g = grants.c
    return list(
        conn.execute(
            select(g.grant_id, g.feature, g.blocks, g.price, g.effective_us)
            .where(
                g.customer == customer,
                g.kind == "topup",
                g.effective_us >= start_us,
                g.effective_us <= upto_us,
            )
            .order_by(g.effective_us, g.grant_id)
        )
    )


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
