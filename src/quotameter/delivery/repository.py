"""All SQL for deliveries: fan-out from the notice outbox, claims with a lease, outcomes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from quotameter.delivery.model import DEAD, DELIVERED, PENDING, SENDING
from quotameter.store.tables import deliveries


def add(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(deliveries), rows)


def due(conn: Connection, now_us: int, limit: int) -> list[Any]:
    """Due deliveries (pending and due, or sending with an expired lease), locked until the
    transaction ends (PostgreSQL: other workers skip them)."""
    d = deliveries.c
    q = (
        select(deliveries)
        .where(d.status.in_((PENDING, SENDING)), d.next_attempt_us <= now_us)
        .order_by(d.next_attempt_us, d.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(conn.execute(q))


def lease(conn: Connection, ids: list[int], lease_until_us: int) -> None:
    """Claim: `sending` until the lease ends, the attempt counted now (a delivery that kills
    its process still reaches the dead letter)."""
    d = deliveries.c
    if ids:
        conn.execute(
            update(deliveries)
            .where(d.id.in_(ids))
            .values(
                status=SENDING,
                attempts=d.attempts + 1,
                lease_until_us=lease_until_us,
                next_attempt_us=lease_until_us,
            )
        )


def mark_dead(conn: Connection, ids: list[int], now_us: int, error: str) -> None:
    d = deliveries.c
    if ids:
        conn.execute(
            update(deliveries)
            .where(d.id.in_(ids))
            .values(status=DEAD, lease_until_us=None, next_attempt_us=now_us, last_error=error)
        )


def delivered(conn: Connection, delivery_id: int, now_us: int) -> None:
    """Success counts even if the lease ran out meanwhile (another pass may send it again:
    at least once)."""
    d = deliveries.c
    conn.execute(
        update(deliveries)
        .where(d.id == delivery_id, d.status != DELIVERED)
        .values(status=DELIVERED, lease_until_us=None, delivered_us=now_us, last_error=None)
    )


def failed(
    conn: Connection, delivery_id: int, attempts: int, status: str, next_attempt_us: int, error: str
) -> bool:
    """Record a failed attempt, unless the claim is no longer ours (the lease ran out and
    another pass claimed it: its outcome is the one that counts)."""
    d = deliveries.c
    result = conn.execute(
        update(deliveries)
        .where(d.id == delivery_id, d.status == SENDING, d.attempts == attempts)
        .values(
            status=status,
            lease_until_us=None,
            next_attempt_us=next_attempt_us,
            last_error=error[:2000],
        )
    )
    return bool(result.rowcount)


def for_notices(conn: Connection, notice_ids: list[int]) -> dict[int, list[Any]]:
    """Each notice's deliveries, oldest first."""
    d = deliveries.c
    out: dict[int, list[Any]] = {}
    if notice_ids:
        q = (
            select(d.notice_id, d.channel, d.target, d.status, d.attempts, d.last_error)
            .where(d.notice_id.in_(notice_ids))
            .order_by(d.id)
        )
        for row in conn.execute(q):
            out.setdefault(row.notice_id, []).append(row)
    return out
