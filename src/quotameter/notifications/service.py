"""Deciding what to tell whom: thresholds, exhaustion, blocks, restores, auto-upgrades.

`evaluate` compares a feature's standing with the levels already fired in the period and
records a notice for each newly reached one (several at once are each recorded). A level
no longer reached — a grant, seat or plan change lifted the limit — is re-armed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Row

from quotameter.catalog.model import EntitlementSpec
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers.service import CustomerView
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance, balance, period_of
from quotameter.notice_kinds import NoticeKind
from quotameter.notifications import repository as repo
from quotameter.store.engine import lock_keys
from quotameter.timeutil import from_us, to_us

BLOCKED = "blocked"
MAX_UPGRADES = 10  # a next_plan chain is checked for cycles, this only bounds a long ladder


def recipients(
    view: CustomerView, ent: EntitlementSpec | None, kind: NoticeKind
) -> dict[str, object]:
    who = ent.notify.recipients if ent is not None and ent.notify is not None else "admins"
    if kind in (NoticeKind.PLAN_UPGRADING, NoticeKind.PLAN_UPGRADED):
        who = "owner" if view.spec.owner else "admins"
    email = _addresses(view, who)
    # Every member is stopped by a block, so every member is told by e-mail too.
    if kind == NoticeKind.ACCESS_BLOCKED:
        email = list(dict.fromkeys([*email, *view.spec.members]))
    out: dict[str, object] = {
        "email": email,
        "in_app": kind in (NoticeKind.ACCESS_BLOCKED, NoticeKind.ACCESS_RESTORED),
    }
    if out["in_app"]:
        out["members"] = list(view.spec.members)  # every member learns it in-app
    return out


def _addresses(view: CustomerView, who: str) -> list[str]:
    if who == "owner":
        return [view.spec.owner] if view.spec.owner else list(view.spec.admins)
    if who == "members":
        return list(dict.fromkeys([*view.spec.members, *view.spec.admins]))
    return list(view.spec.admins) or ([view.spec.owner] if view.spec.owner else [])


def _payload(b: Balance, **extra: object) -> dict[str, object]:
    s = b.standing
    body: dict[str, object] = {
        "plan": b.plan,
        "unit": b.unit,
        "usage": str(s.usage),
        "limit": None if s.limit is None else str(s.limit),
        "hard_limit": None if s.hard_limit is None else str(s.hard_limit),
    }
    body.update(extra)
    return body


def evaluate(
    ctx: Context,
    customer: str,
    feature: str,
    at: datetime,
    recorded_us: int,
    depth: int = 0,
    balances: dict[str, Balance] | None = None,
    view: CustomerView | None = None,
) -> list[int]:
    """Record the notices a feature's standing at `at` calls for; their ids. The balance it
    read is left in `balances` (by feature), when given. `view`: the customer's view at `at`,
    when the caller read it already, after taking this customer's lock (`lock`).

    Evaluations of one customer are serialized (SQLite: the write transaction; PostgreSQL:
    an advisory lock taken here, after any other lock of the transaction, so no cycle), and
    everything below is read after the lock: an evaluator in another process that read
    the balance before a concurrent consume committed would otherwise find a level fired
    that its stale usage had not reached, re-arm it, and have it recorded twice."""
    conn, catalog = ctx.conn, ctx.catalog
    if view is None:  # a caller that passes its view holds the lock already
        lock(conn, customer)
    b = balance(ctx, customer, feature, at, view=view)
    if balances is not None:
        balances[feature] = b
    at_us = to_us(at)
    view, ent = b.view, b.entitlement
    period = (to_us(b.period.start), to_us(b.period.end))
    ps = period[0]
    s = b.standing
    done = repo.fired_keys(conn, customer, feature, ps)
    ids: list[int] = []

    def note(kind: NoticeKind, percent: Decimal | None, **extra: object) -> None:
        ids.append(
            repo.record(
                conn,
                customer=customer,
                feature=feature,
                type=kind,
                percent=percent,
                period=period,
                at_us=at_us,
                recipients=recipients(view, ent, kind),
                payload=_payload(b, **extra),
                recorded_us=recorded_us,
            )
        )

    levels = model.thresholds(ent.notify)
    now_reached = model.reached(s, levels)
    # Only an evaluation at or after the instant a level fired can take it back: usage only
    # grows within a period, so an earlier instant's lower usage (another process asked
    # about a moment before a consume it had not seen) is no sign of a raised limit.
    for key in set(done) - {BLOCKED}:
        if at_us >= done[key] and model.below(s, key):
            repo.rearm(conn, customer, feature, ps, key)
    for level in now_reached:
        if level.key not in done and repo.fire(conn, customer, feature, ps, level.key, at_us):
            note(level.kind, level.percent_used)

    next_plan = view.plan.next_plan
    if (
        view.spec.auto_upgrade
        and next_plan
        and s.limit is not None
        and s.usage >= s.limit
        and depth < MAX_UPGRADES
        and feature in catalog.spec.plans[next_plan].entitlements
    ):
        note(NoticeKind.PLAN_UPGRADING, None, from_plan=view.plan_name, to_plan=next_plan)
        customers.change_plan(ctx, customer, next_plan, at_us, recorded_us, reason="auto_upgrade")
        after = balance(ctx, customer, feature, at)
        ids.append(
            repo.record(
                conn,
                customer=customer,
                feature=feature,
                type=NoticeKind.PLAN_UPGRADED,
                percent=None,
                period=period,
                at_us=at_us,
                recipients=recipients(view, ent, NoticeKind.PLAN_UPGRADED),
                payload=_payload(after, from_plan=view.plan_name, to_plan=next_plan),
                recorded_us=recorded_us,
            )
        )
        return ids + evaluate(ctx, customer, feature, at, recorded_us, depth + 1)

    repo.put_standing(
        conn,
        customer,
        feature,
        period=period,
        usage=s.usage,
        limit=s.limit,
        percent=model.percent_used(s),
        near=bool(levels) and bool(model.reached(s, levels[:1])),
        blocked=not s.has_access,
        overage=s.overage > 0,
        evaluated_us=at_us,
    )
    if not s.has_access:
        if BLOCKED not in done and repo.fire(conn, customer, feature, ps, BLOCKED, at_us):
            note(NoticeKind.ACCESS_BLOCKED, model.percent_used(s))
    elif (
        BLOCKED in done
        and at_us >= done[BLOCKED]
        and repo.rearm(conn, customer, feature, ps, BLOCKED)
    ):
        note(NoticeKind.ACCESS_RESTORED, model.percent_used(s))
    return ids


def lock(conn: Connection, customer: str) -> None:
    """Serialize the evaluations of this customer (see `evaluate`)."""
    lock_keys(conn, [f"notify\x01{customer}"])


def evaluate_all(
    ctx: Context,
    customer: str,
    at: datetime,
    recorded_us: int,
    meters: set[str] | None = None,
    balances: dict[str, Balance] | None = None,
) -> list[int]:
    """Evaluate every feature of the customer's plan (or those backed by `meters`); the
    balances read are left in `balances` (by feature), when given."""
    conn = ctx.conn
    ids: list[int] = []
    lock(conn, customer)  # first: the view read here is then the one each evaluation uses
    view = customers.view(ctx, customer, to_us(at))
    for feature in sorted(view.plan.entitlements):
        ent = view.plan.entitlements.get(feature)
        if ent is None or (meters is not None and ent.meter not in meters):
            continue
        if _watched(ent, view) or _blocked_on_record(conn, view, ent, feature, at):
            recorded = evaluate(
                ctx, customer, feature, at, recorded_us, balances=balances, view=view
            )
            if recorded:  # an auto-upgrade among them may have moved the plan
                view = customers.view(ctx, customer, to_us(at))
            ids += recorded
    return ids


def _watched(ent: EntitlementSpec, view: CustomerView) -> bool:
    """Whether anything can ever be said about this entitlement."""
    if ent.allowance is None:
        return False
    return (
        ent.notify is not None
        or ent.enforcement != "none"
        or bool(view.spec.auto_upgrade and view.plan.next_plan)
    )


def _blocked_on_record(
    conn: Connection, view: CustomerView, ent: EntitlementSpec, feature: str, at: datetime
) -> bool:
    """Whether a block of the period is on record for a feature that can block no more (a plan
    change made it unlimited, or unenforced): evaluating it tells that access is restored."""
    start = period_of(view, ent, at).start
    return BLOCKED in repo.fired_keys(conn, view.key, feature, to_us(start))


def as_dict(row: Row[Any]) -> dict[str, object]:
    out: dict[str, object] = {
        "id": row.id,
        "type": row.type,
        "feature": row.feature,
        "percent": row.percent,
        "period": None
        if row.period_start_us is None
        else {"start": from_us(row.period_start_us), "end": from_us(row.period_end_us)},
        "at": from_us(row.at_us),
        "recipients": orjson.loads(row.recipients),
        "status": row.status,
    }
    out["details"] = orjson.loads(row.payload)
    return out


def listing(conn: Connection, customer: str, after_id: int = 0, limit: int = 500) -> list[Row[Any]]:
    """The customer's recorded notices after `after_id`, oldest first, at most `limit`."""
    return repo.listing(conn, customer, after_id, limit)


def mark_pending(conn: Connection, customers: list[str], since_us: int) -> None:
    """Have these customers evaluated again (by the scheduler, or before their next read)."""
    repo.mark_pending(conn, customers, since_us)


def record(
    conn: Connection,
    *,
    customer: str,
    feature: str | None,
    type: NoticeKind,
    percent: Decimal | None,
    period: tuple[int, int] | None,
    at_us: int,
    recipients: dict[str, object],
    payload: dict[str, object],
    recorded_us: int,
) -> int:
    """Record a notice (delivered by the outbox after the commit); its id."""
    return repo.record(
        conn,
        customer=customer,
        feature=feature,
        type=type,
        percent=percent,
        period=period,
        at_us=at_us,
        recipients=recipients,
        payload=payload,
        recorded_us=recorded_us,
    )


PENDING = "(SELECT count(*) FROM pending_evaluations WHERE customer = :c)"
"""How many evaluations customer `:c` owes, as an SQL scalar subquery."""


def is_pending(conn: Connection, customer: str) -> bool:
    """Does the customer owe an evaluation (usage recorded since the last one)?"""
    return repo.is_pending(conn, customer)


def latest_id(conn: Connection, customer: str) -> int:
    """The id of the customer's newest notice (0: none yet)."""
    return repo.latest_id(conn, customer)


def standings_in_force(
    conn: Connection, now_us: int, customers: Sequence[str] | None = None
) -> list[tuple[Any, ...]]:
    """Where the last exact evaluation found each limited feature of every customer (or of
    these `customers`), for the periods not ended at `now_us`, in one query: tuples of
    customer, feature, percent, near, blocked, overage, since_us, evaluated_us, usage, limit
    (the decimals exact but not in canonical form: `decimals.canonical` before showing them)."""
    return repo.standings_in_force(conn, now_us, customers)


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many notices each customer has (customers with none left out)."""
    return repo.count_by_customer(conn, customers)


def take_unsent(conn: Connection, limit: int) -> list[Row[Any]]:
    """Up to `limit` notices not dispatched yet, oldest first, held until the transaction ends."""
    return repo.take_unsent(conn, limit)


def mark_dispatched(conn: Connection, ids: list[int]) -> None:
    """These notices' deliveries are made."""
    repo.mark_dispatched(conn, ids)


def newest_ids(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the id of its newest notice (customers with none left out)."""
    return repo.newest_ids(conn, customers)


def pending_among(conn: Connection, customers: Sequence[str]) -> set[str]:
    """Those of `customers` who owe an evaluation."""
    return repo.pending_among(conn, customers)


def on_commit(engine: Engine, callback: Callable[[set[str]], None], *, owed: bool = False) -> None:
    """Call `callback` with the customers this process's committed transactions recorded
    notices for (with `owed`, also evaluations they now owe), once visible to others."""
    repo.on_commit(engine, callback, owed=owed)
