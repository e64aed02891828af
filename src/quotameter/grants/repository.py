"""All SQL for grants (top-ups and credits)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.customers import state
from quotameter.store import bulk
from quotameter.store.tables import Decimal as DecimalColumn
from quotameter.store.tables import grants


def add(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a grant; False when its id was already used (nothing written)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(grants)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["customer", "grant_id"])
        .returning(grants.c.grant_id)
    )
    created = conn.execute(stmt).first() is not None
    if created:
        state.bump(conn, [(row["customer"], row["effective_us"])])
    return created


def get(conn: Connection, customer: str, grant_id: str) -> Row[Any] | None:
    g = grants.c
    return conn.execute(
        select(grants).where(g.customer == customer, g.grant_id == grant_id)
    ).first()


def in_force(
    conn: Connection, customer: str, feature: str, period_start_us: int, at_us: int
) -> tuple[Decimal, bool]:
    """(grants bought in this period in force at `at`, whether any earlier rollover grant
    is still unexpired at the period's start): one query on the hot path of every check."""
    rows = conn.execute(_IN_FORCE, {"c": customer, "f": feature, "ps": period_start_us}).all()
    bought = sum(
        (
            Decimal(r.amount)
            for r in rows
            if r.period_start_us == period_start_us and r.effective_us <= at_us
        ),
        Decimal(0),
    )
    carried = any(r.rollover and r.period_start_us < period_start_us for r in rows)
    return bought, carried


_IN_FORCE = text(
    "SELECT amount, period_start_us, effective_us, rollover FROM grants "
    "WHERE customer = :c AND feature = :f AND expires_us > :ps AND period_start_us <= :ps"
).columns(amount=DecimalColumn)  # read as the column type would, the same on both databases


def rollover_total(
    conn: Connection, customer: str, feature: str, period_start_us: int, at_us: int
) -> Decimal:
    """The rollover grants bought in the period starting at `period_start_us`, in force at
    `at_us`."""
    g = grants.c
    amount = (
        func.dec_sum(g.amount, type_=DecimalColumn())
        if conn.dialect.name == "sqlite"
        else func.sum(g.amount)
    )
    value = conn.execute(
        select(amount).where(
            g.customer == customer,
            g.feature == feature,
            g.period_start_us == period_start_us,
            g.effective_us <= at_us,
            g.rollover.is_(True),
        )
    ).scalar()
    return Decimal(value) if value is not None else Decimal(0)


def listing(conn: Connection, customer: str) -> list[Row[Any]]:
    g = grants.c
    return list(
        conn.execute(
            select(grants).where(g.customer == customer).order_by(g.effective_us, g.grant_id)
        )
    )


def earliest(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the earliest instant a grant of it takes effect (customers with none left
    out)."""
    return bulk.min_by(conn, grants.c.customer, grants.c.effective_us, customers)


def last_recorded(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last grant effective in [lo, hi) was recorded."""
    g = grants.c
    return conn.execute(
        select(func.max(g.recorded_us)).where(
            g.customer == customer, g.effective_us >= lo, g.effective_us < hi
        )
    ).scalar()


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


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many grants each customer has (customers with none left out)."""
    return bulk.count_by(conn, grants.c.customer, customers)
