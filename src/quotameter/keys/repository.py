"""All SQL for API keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from quotameter.store import bulk
from quotameter.store.tables import api_keys, console_secrets

k = api_keys.c


def add(
    conn: Connection,
    key_id: str,
    digest: str,
    role: str,
    customer: str | None,
    label: str | None,
    created_us: int,
) -> None:
    conn.execute(
        insert(api_keys).values(
            id=key_id,
            digest=digest,
            role=role,
            customer=customer,
            label=label,
            created_us=created_us,
        )
    )


def add_if_absent(
    conn: Connection, key_id: str, digest: str, role: str, label: str, created_us: int
) -> None:
    """Register a key unless its digest is known (two processes may start at the same moment)."""
    values = {
        "id": key_id,
        "digest": digest,
        "role": role,
        "label": label,
        "created_us": created_us,
    }
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        conn.execute(postgresql_insert(api_keys).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(api_keys).values(**values).on_conflict_do_nothing())


def secret(conn: Connection, name: str, candidate: str) -> str:
    """The stored secret `name`, stored as `candidate` first if there is none (several
    processes may start at the same moment: the first one's stays)."""
    values = {"name": name, "value": candidate}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        conn.execute(postgresql_insert(console_secrets).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(console_secrets).values(**values).on_conflict_do_nothing())
    value: str = conn.execute(
        select(console_secrets.c.value).where(console_secrets.c.name == name)
    ).scalar_one()
    return value


def by_digest(conn: Connection, digest: str) -> Row[Any] | None:
    return conn.execute(select(api_keys).where(k.digest == digest)).first()


def by_id(conn: Connection, key_id: str) -> Row[Any] | None:
    return conn.execute(select(api_keys).where(k.id == key_id)).first()


def revoke(conn: Connection, key_id: str, revoked_us: int) -> None:
    conn.execute(
        update(api_keys).where(k.id == key_id, k.revoked_us.is_(None)).values(revoked_us=revoked_us)
    )


def active_ids(conn: Connection, key_ids: Iterable[str]) -> set[str]:
    """Which of these keys exist and are not revoked."""
    return set(
        conn.execute(select(k.id).where(k.id.in_(list(key_ids)), k.revoked_us.is_(None))).scalars()
    )


def every(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(api_keys).order_by(k.created_us, k.id)))


def has_active_admin(conn: Connection) -> bool:
    return (
        conn.execute(select(k.id).where(k.role == "admin", k.revoked_us.is_(None)).limit(1)).first()
        is not None
    )


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many active keys each customer has (customers with none left out)."""
    return bulk.count_by(conn, api_keys.c.customer, customers, api_keys.c.revoked_us.is_(None))
