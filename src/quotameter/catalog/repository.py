"""All SQL for the catalog: each applied document is kept as a new version; customers signed
up through the API are listed apart, to be carried into later versions."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.tables import catalogs, signups

_LATEST = text("SELECT max(version) FROM catalogs")


def latest_version(conn: Connection) -> int:
    return conn.execute(_LATEST).scalar() or 0


def document(conn: Connection, version: int) -> str:
    doc: str = conn.execute(
        select(catalogs.c.document).where(catalogs.c.version == version)
    ).scalar_one()
    return doc


def add(conn: Connection, version: int, doc: str, applied_us: int) -> None:
    conn.execute(insert(catalogs).values(version=version, document=doc, applied_us=applied_us))


def first_applied(conn: Connection) -> int | None:
    return conn.execute(text("SELECT min(applied_us) FROM catalogs")).scalar()


def add_signup(conn: Connection, customer: str, created_us: int) -> bool:
    """Record a signed-up customer; False when the name is recorded already (by this or by
    another process)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(signups)
        .values(customer=customer, created_us=created_us)
        .on_conflict_do_nothing()
        .returning(signups.c.customer)
    )
    return conn.execute(stmt).first() is not None


def signups_all(conn: Connection) -> dict[str, int]:
    """Every signed-up customer, with the instant it was created."""
    return {c: t for c, t in conn.execute(select(signups.c.customer, signups.c.created_us))}


def signup_of(conn: Connection, customer: str) -> int | None:
    found: int | None = conn.execute(
        select(signups.c.created_us).where(signups.c.customer == customer)
    ).scalar()
    return found
