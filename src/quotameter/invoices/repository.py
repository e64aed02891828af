"""All SQL for invoices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store import bulk
from quotameter.store.engine import lock_keys
from quotameter.store.tables import invoices


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
    """Wait for the customer's writers in flight, and keep new ones out until this transaction
    ends."""
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


def listing(
    conn: Connection, customer: str, after_start_us: int | None = None, limit: int | None = None
) -> list[Any]:
    """The customer's invoices by period start: after `after_start_us`, at most `limit`."""
    i = invoices.c
    query = select(invoices).where(i.customer == customer)
    if after_start_us is not None:
        query = query.where(i.period_start_us > after_start_us)
    return list(conn.execute(query.order_by(i.period_start_us).limit(limit)))


def starting_between(conn: Connection, customer: str, lo_us: int, hi_us: int) -> list[Any]:
    """The customer's invoices whose period starts in [lo_us, hi_us), by period start."""
    i = invoices.c
    return list(
        conn.execute(
            select(invoices)
            .where(i.customer == customer, i.period_start_us >= lo_us, i.period_start_us < hi_us)
            .order_by(i.period_start_us)
        )
    )


_THROUGH_ONE = text("SELECT max(period_end_us) FROM invoices WHERE customer = :c")


def finalized_through(conn: Connection, customer: str) -> int | None:
    """The end of the customer's last finalized period: nothing before it may change."""
    return conn.execute(_THROUGH_ONE, {"c": customer}).scalar()


def finalized_through_many(conn: Connection, customers: Sequence[str] | None) -> dict[str, int]:
    """`finalized_through` of several customers (None: all) in one query."""
    if customers is None:
        i = invoices.c
        query = select(i.customer, func.max(i.period_end_us)).group_by(i.customer)
        return {row[0]: row[1] for row in conn.execute(query)}
    if not customers:
        return {}
    rows = conn.execute(
        text(
            "SELECT customer, max(period_end_us) FROM invoices "
            f"WHERE customer IN ({bulk.names(conn, 'c')}) GROUP BY customer"
        ),
        {"c": bulk.as_names(customers)},
    )
    return {row[0]: row[1] for row in rows}


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many invoices each customer has (customers with none left out)."""
    return bulk.count_by(conn, invoices.c.customer, customers)
