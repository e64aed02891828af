"""Delivering notices at least once.

1. Fan-out: each pending notice becomes one delivery per channel target (one e-mail to its
   recipients; one per webhook endpoint), its content rendered once, and the notice is
   marked `dispatched` in the same transaction: a notice is never half fanned out.
2. Claim: due deliveries are leased (status `sending`, `lease_until_us`), their attempt
   counted, in a short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several
   workers share the work; SQLite: the write transaction).
3. Send, outside any transaction; then record the outcome: delivered, or another try after
   the backoff, or the dead letter after `Policy.max_attempts`. A process that dies
   between 1 and 3 leaves the lease to run out; the next pass sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, Row

from quotameter.catalog.model import PlanSpec
from quotameter.catalog.service import CatalogCache, LoadedCatalog
from quotameter.context import Context
from quotameter.delivery import repository as repo
from quotameter.delivery.model import PENDING, Notice, Policy, after_failure
from quotameter.notifications import service as notices
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import from_us, to_us

log = logging.getLogger("quotameter.delivery")
DEFAULT_POLICY = Policy()


class DeliveryFailed(Exception):
    """An attempt that did not reach its target (tried again later)."""


@dataclass(frozen=True)
class Outgoing:
    id: int
    notice_id: int
    channel: str
    target: str
    body: str
    attempts: int  # including this one


class Sender(Protocol):
    channel: str

    def targets(self, notice: Notice) -> list[str]: ...

    def render(self, notice: Notice, plans: dict[str, PlanSpec]) -> str: ...

    def send(self, out: Outgoing, now: datetime) -> None: ...


def notice_of(row: Row[Any], catalog: LoadedCatalog) -> Notice:
    customer = catalog.spec.customers.get(row.customer)
    return Notice(
        id=row.id,
        customer=row.customer,
        type=row.type,
        feature=row.feature,
        percent=None if row.percent is None else Decimal(row.percent),
        period_start=None if row.period_start_us is None else from_us(row.period_start_us),
        period_end=None if row.period_end_us is None else from_us(row.period_end_us),
        at=from_us(row.at_us),
        recipients=orjson.loads(row.recipients),
        details=orjson.loads(row.payload),
        timezone=customer.timezone if customer is not None else "UTC",
    )


def fan_out(
    ctx: Context,
    now_us: int,
    senders: Sequence[Sender],
    limit: int = 200,
) -> int:
    """Turn up to `limit` pending notices into deliveries; how many notices were taken."""
    conn, catalog = ctx.conn, ctx.catalog
    rows = notices.take_unsent(conn, limit)
    out: list[dict[str, Any]] = []
    for row in rows:
        notice = notice_of(row, catalog)
        for sender in senders:
            targets = sender.targets(notice)
            if not targets:
                continue
            body = sender.render(notice, catalog.spec.plans)
            out += [
                {
                    "notice_id": notice.id,
                    "customer": notice.customer,
                    "channel": sender.channel,
                    "target": target,
                    "body": body,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_us": now_us,
                    "created_us": now_us,
                }
                for target in targets
            ]
    repo.add(conn, out)
    notices.mark_dispatched(conn, [r.id for r in rows])
    return len(rows)


def claim(conn: Connection, now_us: int, policy: Policy, limit: int) -> list[Outgoing]:
    """Lease up to `limit` due deliveries to the caller."""
    while True:
        rows = repo.due(conn, now_us, limit)
        # A lease that ran out after the last allowed attempt: its process died sending it.
        spent = [r.id for r in rows if r.attempts >= policy.max_attempts]
        repo.mark_dead(conn, spent, now_us, f"lease expired after attempt {policy.max_attempts}")
        live = [r for r in rows if r.attempts < policy.max_attempts]
        if live or not spent:
            break
    repo.lease(conn, [r.id for r in live], now_us + policy.lease_us)
    return [Outgoing(r.id, r.notice_id, r.channel, r.target, r.body, r.attempts + 1) for r in live]


def record(conn: Connection, out: Outgoing, error: str | None, now_us: int, policy: Policy) -> str:
    if error is None:
        repo.delivered(conn, out.id, now_us)
        return "delivered"
    status, next_us = after_failure(out.attempts, now_us, policy)
    repo.failed(conn, out.id, out.attempts, status, next_us, error)
    return status


def deliver_due(
    engine: Engine,
    now: datetime,
    senders: Iterable[Sender],
    *,
    policy: Policy = DEFAULT_POLICY,
    catalogs: CatalogCache | None = None,
    batch: int = 20,
) -> int:
    """One pass at instant `now`: fan out pending notices, then attempt every delivery due;
    how many attempts were made (successful or not)."""
    senders = list(senders)
    by_channel = {s.channel: s for s in senders}
    catalogs = catalogs or CatalogCache()
    now_us = to_us(now)
    while True:
        with unit_of_work(engine) as conn:
            taken = fan_out(Context(conn, catalogs.current(conn)), now_us, senders)
        if taken == 0:
            break
    attempted = 0
    while True:  # ends: every claimed row is due again only after `now` (lease or backoff > 0)
        with unit_of_work(engine) as conn:
            claimed = claim(conn, now_us, policy, batch)
        if not claimed:
            return attempted
        for out in claimed:
            error = _attempt(by_channel.get(out.channel), out, now)
            with unit_of_work(engine) as conn:
                status = record(conn, out, error, now_us, policy)
            if error is not None:
                log.warning(
                    "delivery %s (notice %s, %s) attempt %s failed, now %s: %s",
                    out.id,
                    out.notice_id,
                    out.channel,
                    out.attempts,
                    status,
                    error,
                )
            attempted += 1


def _attempt(sender: Sender | None, out: Outgoing, now: datetime) -> str | None:
    if sender is None:
        return f"no {out.channel} channel is configured"
    try:
        sender.send(out, now)
    except DeliveryFailed as err:
        return str(err)
    except Exception as err:
        log.exception("delivery %s: unexpected error", out.id)
        return f"{type(err).__name__}: {err}"
    return None


def for_notices(conn: Connection, notice_ids: list[int]) -> dict[int, list[Any]]:
    """Each notice's deliveries, oldest first."""
    return repo.for_notices(conn, notice_ids)
