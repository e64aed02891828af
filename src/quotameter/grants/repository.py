"""All SQL for grants (top-ups and credits)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.tables import grants


def add(conn: Connection, row: dict) -> bool:
    """Insert a grant; False when its id was already used (nothing written)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(grants).values(**row).on_conflict_do_nothing(index_elements=["customer", "grant_id"])
            .returning(grants.c.grant_id))
    return conn.execute(stmt).first() is not None


def get(conn: Connection, customer: str, grant_id: str):  # type: ignore[no-untyped-def]
    g = grants.c
    return conn.execute(select(grants).where(g.customer == customer, g.grant_id == grant_id)).first()


def total(conn: Connection, customer: str, feature: str, period_start_us: int, at_us: int,
          rollover: bool | None = None) -> Decimal:
    """The grants bought in the period starting at `period_start_us`, in force at `at_us`."""
    g = grants.c
    q = select(func.coalesce(func.sum(g.amount), 0) if conn.dialect.name != "sqlite" else func.dec_sum(g.amount)
               ).where(g.customer == customer, g.feature == feature, g.period_start_us == period_start_us,
                       g.effective_us <= at_us)
    if rollover is not None:
        q = q.where(g.rollover.is_(rollover))
    value = conn.execute(q).scalar()
    return Decimal(value) if value is not None else Decimal(0)


def listing(conn: Connection, customer: str) -> list:
    g = grants.c
    return list(conn.execute(select(grants).where(g.customer == customer).order_by(g.effective_us, g.grant_id)))
