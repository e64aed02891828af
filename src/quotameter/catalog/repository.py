"""All SQL for the catalog: each applied document is kept as a new version."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, text

from quotameter.store.tables import catalogs

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
