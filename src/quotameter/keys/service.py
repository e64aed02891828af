"""Keys: made random, shown once, kept only as a digest, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row

from quotameter.errors import Invalid, NotFound
from quotameter.keys import repository
from quotameter.timeutil import from_us

ROLES = ("admin", "ingest", "customer")
PREFIX = "qm_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its role, and for a customer key its customer."""

    key_id: str
    role: str
    customer: str | None


def _principal(row: Row[Any]) -> Principal:
    return Principal(row.id, row.role, row.customer)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "role": row.role,
        "customer": row.customer,
        "label": row.label,
        "created_at": from_us(row.created_us),
        "revoked_at": None if row.revoked_us is None else from_us(row.revoked_us),
    }


def create(
    conn: Connection,
    role: str,
    customer: str | None,
    label: str | None,
    now_us: int,
    known_customers: Container[str],
) -> tuple[dict[str, Any], str]:
    """A new key: its description, and the key itself (the only time it is ever shown)."""
    if role not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    if role == "customer":
        if not customer:
            raise Invalid("customer: required for a key of role 'customer'")
        if customer not in known_customers:
            raise NotFound(f"customer: unknown customer {customer!r}")
    elif customer is not None:
        raise Invalid(
            f"customer: only a key of role 'customer' belongs to a customer (role is {role!r})"
        )
    key_id = "key_" + secrets.token_hex(8)
    secret = PREFIX + secrets.token_urlsafe(32)
    repository.add(conn, key_id, digest(secret), role, customer, label, now_us)
    return _view(_written(conn, key_id)), secret


def revoke(conn: Connection, key_id: str, now_us: int) -> dict[str, Any]:
    if repository.by_id(conn, key_id) is None:
        raise NotFound(f"id: unknown key {key_id!r}")
    repository.revoke(conn, key_id, now_us)
    return _view(_written(conn, key_id))


def _written(conn: Connection, key_id: str) -> Row[Any]:
    """A key this transaction has just added or changed."""
    row = repository.by_id(conn, key_id)
    assert row is not None  # written in this same transaction: it is there
    return row


def revoked_among(conn: Connection, key_ids: set[str]) -> set[str]:
    """The keys among these that no longer let anyone in."""
    return key_ids - repository.active_ids(conn, key_ids) if key_ids else set()


def listing(conn: Connection) -> list[dict[str, Any]]:
    return [_view(row) for row in repository.every(conn)]


def bootstrap(conn: Connection, admin_key: str | None, now_us: int) -> str | None:
    """Make sure an admin can get in. `admin_key` (QUOTAMETER_ADMIN_KEY) is registered as an
    admin key; without one, and with no admin key in the database yet, a key is generated
    and returned, for the caller to show once. Nothing is returned on later starts."""
    if admin_key:
        wanted = digest(admin_key)
        repository.add_if_absent(
            conn, "key_env_" + wanted[:12], wanted, "admin", "QUOTAMETER_ADMIN_KEY", now_us
        )
        return None
    if repository.has_active_admin(conn):
        return None
    secret = PREFIX + secrets.token_urlsafe(32)
    repository.add(
        conn,
        "key_" + secrets.token_hex(8),
        digest(secret),
        "admin",
        None,
        "first admin key",
        now_us,
    )
    return secret


def console_secret(conn: Connection) -> str:
    """The secret that signs console sessions when none is configured: made at random once,
    kept in the database so that every process and every restart shares it."""
    return repository.secret(conn, "console_session", secrets.token_urlsafe(48))


class KeyCache:
    """Keys verified by this process, remembered for a few seconds so a busy endpoint does not
    read the key table on every request. A key revoked here is forgotten at once; a key
    revoked through another process stops working here within `ttl` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._known: dict[str, tuple[Principal | None, float]] = {}
        self._by_id: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()

    def verify(self, engine: Engine, presented: str) -> Principal | None:
        wanted = digest(presented)

        def look(conn: Connection) -> Principal | None:
            row = repository.by_digest(conn, wanted)
            if row is None or row.revoked_us is not None:
                return None
            return _principal(row) if hmac.compare_digest(row.digest, wanted) else None

        return self._remembered(self._known, wanted, engine, look)

    def by_id(self, engine: Engine, key_id: str) -> Principal | None:
        """The holder of an active key known by its id (a console session keeps only the id),
        remembered like `verify`'s answers: a key revoked elsewhere ends within `ttl`."""

        def look(conn: Connection) -> Principal | None:
            row = repository.by_id(conn, key_id)
            return None if row is None or row.revoked_us is not None else _principal(row)

        return self._remembered(self._by_id, key_id, engine, look)

    def _remembered(
        self,
        known: dict[str, tuple[Principal | None, float]],
        key: str,
        engine: Engine,
        look: Callable[[Connection], Principal | None],
    ) -> Principal | None:
        hit = known.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        with engine.connect() as conn:
            found = look(conn)
        with self._lock:
            if len(known) > 10_000:  # a flood of made-up keys must not grow this forever
                known.clear()
            known[key] = (found, now + self.ttl)
        return found

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
            self._by_id.clear()


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many active keys each customer has (customers with none left out)."""
    return repository.count_by_customer(conn, customers)
