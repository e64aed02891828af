"""All SQL for notices: fired levels, the outbox, wake-ups, watches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from types import ModuleType
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.customers import state
from quotameter.notifications.watch import Watch
from quotameter.store import bulk
from quotameter.store.engine import on_commit as store_on_commit
from quotameter.store.tables import (
    fired,
    notices,
    pending_evaluations,
    standings,
    wakeups,
    watches,
)


def _dialect(conn: Connection) -> ModuleType:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def fired_keys(
    conn: Connection, customer: str, feature: str, period_start_us: int
) -> dict[str, int]:
    """The levels fired in the period, each with the instant it fired at."""
    rows = conn.execute(_FIRED_KEYS, {"c": customer, "f": feature, "p": period_start_us})
    return {key: at_us for key, at_us in rows}


# The statements of an exact evaluation are prepared once: built as query constructs at every
# call, compiling them cost more than running them.
_FIRED_KEYS = text(
    "SELECT key, at_us FROM fired_thresholds "
    "WHERE customer = :c AND feature = :f AND period_start_us = :p"
)


def fire(
    conn: Connection, customer: str, feature: str, period_start_us: int, key: str, at_us: int
) -> bool:
    """Mark a level as fired; False if it already was (by this or another process)."""
    stmt = (
        _dialect(conn)
        .insert(fired)
        .values(
            customer=customer,
            feature=feature,
            period_start_us=period_start_us,
            key=key,
            at_us=at_us,
        )
        .on_conflict_do_nothing()
    )
    return conn.execute(stmt.returning(fired.c.key)).first() is not None


def rearm(conn: Connection, customer: str, feature: str, period_start_us: int, key: str) -> bool:
    f = fired.c
    return bool(
        conn.execute(
            delete(fired).where(
                f.customer == customer,
                f.feature == feature,
                f.period_start_us == period_start_us,
                f.key == key,
            )
        ).rowcount
    )


def record(
    conn: Connection,
    *,
    customer: str,
    feature: str | None,
    type: str,
    percent: Decimal | None,
    period: tuple[int, int] | None,
    at_us: int,
    recipients: dict[str, object],
    payload: dict[str, object],
    recorded_us: int,
) -> int:
    return int(
        conn.execute(
            insert(notices)
            .values(
                customer=customer,
                feature=feature,
                type=type,
                percent=percent,
                period_start_us=period[0] if period else None,
                period_end_us=period[1] if period else None,
                at_us=at_us,
                recipients=orjson.dumps(recipients).decode(),
                payload=orjson.dumps(payload).decode(),
                status="pending",
                attempts=0,
                next_attempt_us=recorded_us,
                recorded_us=recorded_us,
            )
            .returning(notices.c.id)
        ).scalar_one()
    )


def listing(conn: Connection, customer: str, after_id: int = 0, limit: int = 500) -> list[Any]:
    n = notices.c
    return list(
        conn.execute(
            select(notices)
            .where(n.customer == customer, n.id > after_id)
            .order_by(n.id)
            .limit(limit)
        )
    )


def set_wakeup(conn: Connection, customer: str, feature: str, due_us: int | None) -> None:
    if due_us is None:
        conn.execute(_DROP_WAKEUP, {"c": customer, "f": feature})
    else:
        conn.execute(_SET_WAKEUP, {"c": customer, "f": feature, "d": due_us})


_DROP_WAKEUP = text("DELETE FROM wakeups WHERE customer = :c AND feature = :f")
_SET_WAKEUP = text(
    "INSERT INTO wakeups (customer, feature, due_us, exact) VALUES (:c, :f, :d, true) "
    "ON CONFLICT (customer, feature) DO UPDATE SET due_us = excluded.due_us, exact = true"
)


def due_wakeups(conn: Connection, now_us: int, limit: int = 100) -> list[Any]:
    w = wakeups.c
    return list(
        conn.execute(
            select(w.customer, w.feature, w.due_us, w.exact)
            .where(w.due_us <= now_us)
            .order_by(w.due_us)
            .limit(limit)
        )
    )


def next_wakeup(conn: Connection) -> int | None:
    return conn.execute(select(func.min(wakeups.c.due_us))).scalar()


def mark_pending(conn: Connection, customers: list[str], since_us: int) -> None:
    """Mark these customers for an exact evaluation (one statement; a mark already there is
    kept with its instant)."""
    bulk.insert(
        conn,
        "pending_evaluations",
        ("customer", "since_us"),
        ("text", "bigint"),
        [(c, since_us) for c in sorted(set(customers))],
        "ON CONFLICT (customer) DO NOTHING",
    )


def is_pending(conn: Connection, customer: str) -> bool:
    return conn.execute(_IS_PENDING, {"c": customer}).first() is not None


_IS_PENDING = text("SELECT 1 FROM pending_evaluations WHERE customer = :c")


def take_pending(conn: Connection, customer: str | None, limit: int) -> list[str]:
    """Claim pending customers. PostgreSQL: the scheduler (no `customer`) skips the rows
    another evaluator holds; a read settling one customer waits for that evaluator instead,
    so that it then sees the notices it records."""
    p = pending_evaluations.c
    q = select(p.customer).order_by(p.since_us).limit(limit)
    if customer is not None:
        q = q.where(p.customer == customer)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=customer is None)
    names = list(conn.execute(q).scalars())
    if names:
        conn.execute(delete(pending_evaluations).where(p.customer.in_(names)))
    return names


# --- watches (see notifications.watch) -------------------------------------------------------


def read_watches(
    conn: Connection, customers: list[str]
) -> tuple[dict[str, dict[str, Watch]], dict[str, int]]:
    """The watches of these customers (customer -> feature -> watch), and the change counters
    (customers.state) of those that have any: one query for a batch's customers."""
    out: dict[str, dict[str, Watch]] = {}
    counters: dict[str, int] = {}
    if not customers:
        return out, counters
    rows = conn.execute(
        text(f"{_WATCH_COLUMNS}({bulk.names(conn, 'k')})"), {"k": bulk.as_names(customers)}
    )
    for (
        customer,
        feature,
        meter,
        period_end,
        evaluated,
        bound,
        rate,
        goal,
        unit,
        version,
        counter,
    ) in rows:
        out.setdefault(customer, {})[feature] = Watch(
            meter,
            period_end,
            evaluated,
            Decimal(bound),
            rate,
            None if goal is None else Decimal(goal),
            unit,
            version,
        )
        counters[customer] = counter or 0
    return out, counters


_WATCH_COLUMNS = (
    "SELECT w.customer, w.feature, w.meter, w.period_end_us, w.evaluated_us, w.bound, w.rate, "
    "w.goal, "
    f"w.unit_us, w.version, {state.version_of('w.customer')} FROM watches w "
    "WHERE w.customer IN "
)


def drop_watches(conn: Connection, customer: str) -> None:
    conn.execute(_DROP_WATCHES, {"c": customer})


_DROP_WATCHES = text("DELETE FROM watches WHERE customer = :c")


def put_watch(conn: Connection, customer: str, feature: str, watch: Watch, *, insert: bool) -> None:
    """Rewrite the feature's watch; with `insert`, write it also where there was none."""
    values = {"customer": customer, "feature": feature, **_watch_values(watch)}
    conn.execute(_UPSERT_WATCH if insert else _UPDATE_WATCH, values)


_WATCH_FIELDS = ("meter", "period_end_us", "evaluated_us", "bound", "rate", "goal", "unit_us")
_WATCH_SET = ", ".join(f"{name} = :{name}" for name in (*_WATCH_FIELDS, "version"))
_WATCH_DECIMALS = [bindparam(name, type_=watches.c[name].type) for name in ("bound", "goal")]
_UPDATE_WATCH = text(
    f"UPDATE watches SET {_WATCH_SET} WHERE customer = :customer AND feature = :feature"
).bindparams(*_WATCH_DECIMALS)
_UPSERT_WATCH = text(
    f"INSERT INTO watches (customer, feature, {', '.join(_WATCH_FIELDS)}, version) "
    f"VALUES (:customer, :feature, {', '.join(':' + n for n in _WATCH_FIELDS)}, :version) "
    f"ON CONFLICT (customer, feature) DO UPDATE SET {_WATCH_SET}"
).bindparams(*_WATCH_DECIMALS)


def widen_watches(conn: Connection, rows: list[tuple[str, str, Watch, int]]) -> None:
    """Store the bounds a batch raised, each with the customer's change counter it accounts
    for (one statement for the batch)."""
    bulk.update(
        conn,
        "watches",
        ("customer", "feature"),
        ("bound", "rate", "version"),
        ("text", "text", "numeric", "integer", "bigint"),
        [(c, f, w.bound, w.rate, version) for c, f, w, version in sorted(rows, key=_key)],
    )


def _key(row: tuple[str, str, Watch, int]) -> tuple[str, str]:
    return row[0], row[1]


def _watch_values(watch: Watch) -> dict[str, object]:
    return {
        "meter": watch.meter,
        "period_end_us": watch.period_end_us,
        "evaluated_us": watch.evaluated_us,
        "bound": watch.bound,
        "rate": watch.rate,
        "goal": watch.goal,
        "unit_us": watch.unit_us,
        "version": watch.version,
    }


def advance_wakeups(conn: Connection, due: list[tuple[str, str, int]]) -> None:
    """Bring wake-ups forward to these instants (never later than they are); one brought
    forward is no longer an exact crossing. One statement for a batch's (distinct) features."""
    bulk.insert(
        conn,
        "wakeups",
        ("customer", "feature", "due_us", "exact"),
        ("text", "text", "bigint", "boolean"),
        [(c, f, d, False) for c, f, d in sorted(due)],
        "ON CONFLICT (customer, feature) DO UPDATE SET "
        "exact = wakeups.exact AND wakeups.due_us <= excluded.due_us, "
        "due_us = CASE WHEN excluded.due_us < wakeups.due_us THEN excluded.due_us ELSE "
        "wakeups.due_us END",
    )


def latest_id(conn: Connection, customer: str) -> int:
    n = notices.c
    return int(
        conn.execute(
            select(func.coalesce(func.max(n.id), 0)).where(n.customer == customer)
        ).scalar_one()
    )


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many notices each customer has (customers with none left out)."""
    return bulk.count_by(conn, notices.c.customer, customers)


# The outbox: a notice is recorded `pending`, and `dispatched` once its deliveries are made.
UNSENT, DISPATCHED = "pending", "dispatched"


def take_unsent(conn: Connection, limit: int) -> list[Any]:
    """Notices not dispatched yet, locked until the transaction ends (PostgreSQL: others
    skip them; SQLite: the write transaction already serializes every writer)."""
    n = notices.c
    q = select(notices).where(n.status == UNSENT).order_by(n.id).limit(limit)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(conn.execute(q))


def mark_dispatched(conn: Connection, ids: list[int]) -> None:
    n = notices.c
    if ids:
        conn.execute(
            update(notices)
            .where(n.id.in_(ids), n.status == UNSENT)
            .values(status=DISPATCHED, attempts=n.attempts + 1)
        )


def newest_ids(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    n = notices.c
    return dict(
        conn.execute(
            select(n.customer, func.max(n.id)).where(n.customer.in_(customers)).group_by(n.customer)
        ).all()
    )


def pending_among(conn: Connection, customers: Sequence[str]) -> set[str]:
    p = pending_evaluations.c
    return set(
        conn.execute(select(p.customer).where(p.customer.in_(customers)).distinct()).scalars()
    )


def on_commit(engine: Engine, callback: Callable[[set[str]], None], *, owed: bool) -> None:
    """Call `callback` with the customers this process's committed transactions recorded
    notices for (and, with `owed`, evaluations they now owe)."""
    store_on_commit(engine, (notices, pending_evaluations) if owed else (notices,), callback)


# --- standings: where each customer's last exact evaluation found each limited feature ------


def put_standing(
    conn: Connection,
    customer: str,
    feature: str,
    *,
    period: tuple[int, int],
    usage: Decimal,
    limit: Decimal | None,
    percent: Decimal | None,
    near: bool,
    blocked: bool,
    overage: bool,
    evaluated_us: int,
) -> None:
    """Write the feature's standing (one statement). `since_us` is the instant it became
    blocked, or in overage without a block: kept while that stays so within the period, taken
    from this evaluation when it starts, cleared when it ends. An evaluation of an earlier
    instant than the one on record (another process asked about a moment before) changes
    nothing."""
    conn.execute(
        _PUT_STANDING,
        {
            "customer": customer,
            "feature": feature,
            "period_start_us": period[0],
            "period_end_us": period[1],
            "usage": usage,
            "limit": limit,
            "percent": percent,
            "near": near,
            "blocked": blocked,
            "overage": overage,
            "since_us": evaluated_us if blocked or overage else None,
            "evaluated_us": evaluated_us,
        },
    )


# One statement text for both dialects, built once: this runs at every exact evaluation of
# notices (on the ingest path), and building the same upsert as a Core construct on every
# call cost about 0.5 ms each, more than the write itself.
_PUT_STANDING = text(
    """
    INSERT INTO standings (customer, feature, period_start_us, period_end_us, usage, "limit",
                           percent, near, blocked, overage, since_us, evaluated_us)
    VALUES (:customer, :feature, :period_start_us, :period_end_us, :usage, :limit,
            :percent, :near, :blocked, :overage, :since_us, :evaluated_us)
    ON CONFLICT (customer, feature) DO UPDATE SET
        period_start_us = excluded.period_start_us,
        period_end_us = excluded.period_end_us,
        usage = excluded.usage,
        "limit" = excluded."limit",
        percent = excluded.percent,
        near = excluded.near,
        blocked = excluded.blocked,
        overage = excluded.overage,
        since_us = CASE
            WHEN excluded.since_us IS NULL THEN NULL
            WHEN standings.since_us IS NOT NULL
                 AND standings.blocked = excluded.blocked
                 AND standings.period_start_us = excluded.period_start_us
            THEN standings.since_us
            ELSE excluded.since_us
        END,
        evaluated_us = excluded.evaluated_us
    WHERE standings.evaluated_us <= excluded.evaluated_us
    """
).bindparams(
    *(bindparam(name, type_=standings.c[name].type) for name in ("usage", "limit", "percent")),
    *(bindparam(name, type_=standings.c[name].type) for name in ("near", "blocked", "overage")),
)


# Read for every customer at once: the decimals are left as the driver gives them (SQLite:
# text, PostgreSQL: Decimal) and made Decimals here without the column type's canonical
# form, which costs more than the query itself at 10,000 customers (the caller makes the
# few it shows canonical).
_STANDINGS_SQL = (
    "SELECT customer, feature, percent, near, blocked, overage, since_us, evaluated_us, usage, "
    '"limit" FROM standings WHERE period_end_us > :t'
)
_STANDINGS = text(_STANDINGS_SQL)
_STANDINGS_OF = text(_STANDINGS_SQL + " AND customer IN :k").bindparams(
    bindparam("k", expanding=True)
)


def standings_in_force(
    conn: Connection, now_us: int, customers: Sequence[str] | None = None
) -> list[tuple[Any, ...]]:
    """Every standing of a period not ended at `now_us` (of these `customers`, or of all), in
    one query: (customer, feature, percent, near, blocked, overage, since_us, evaluated_us,
    usage, limit)."""
    if customers is None:
        rows = conn.execute(_STANDINGS, {"t": now_us}).all()
    elif customers:
        rows = conn.execute(_STANDINGS_OF, {"t": now_us, "k": list(customers)}).all()
    else:
        return []
    if conn.dialect.name != "sqlite":
        return [tuple(row) for row in rows]
    return [
        (
            c,
            f,
            None if p is None else Decimal(p),
            bool(n),
            bool(b),
            bool(o),
            since,
            at,
            Decimal(u),
            None if lim is None else Decimal(lim),
        )
        for c, f, p, n, b, o, since, at, u, lim in rows
    ]
