"""Engines for the embedded SQLite default and for PostgreSQL, and the unit of work."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

DEFAULT_URL = "sqlite:///quotameter.sqlite3"


def _dec_add(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return format(Decimal(a) + Decimal(b), "f")


def _dec_max(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if Decimal(a) >= Decimal(b) else b


class _DecSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = Decimal(value) + (self.total or 0)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


class _DecMax:
    def __init__(self) -> None:
        self.best: Decimal | None = None

    def step(self, value: str | None) -> None:
        if value is not None and (self.best is None or Decimal(value) > self.best):
            self.best = Decimal(value)

    def finalize(self) -> str | None:
        return None if self.best is None else format(self.best, "f")


def _prepare_sqlite(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # pysqlite's own transaction handling would open a DEFERRED transaction and could then
    # fail to upgrade it to a write lock; we issue BEGIN IMMEDIATE ourselves instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged batch survives a power cut, not only a process crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    dbapi_conn.create_function("dec_add", 2, _dec_add, deterministic=True)
    dbapi_conn.create_function("dec_max", 2, _dec_max, deterministic=True)
    dbapi_conn.create_aggregate("dec_sum", 1, _DecSum)  # type: ignore[arg-type]
    dbapi_conn.create_aggregate("dec_maxagg", 1, _DecMax)  # type: ignore[arg-type]


class _WriteLock:
    """SQLite has one write lock per database file, and a connection that finds it taken
    sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms steps) however soon it is freed.
    The threads of one process queue on this lock instead, and the next one starts the moment
    the last COMMIT or ROLLBACK returns; other processes still meet the busy handler."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: object | None = None

    def begin(self, conn: Connection) -> None:
        fairy = conn.connection
        if not self.lock.acquire(timeout=30):
            raise TimeoutError("database: another transaction of this process held the write lock for 30 s")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        self.holder = fairy

    def release(self, fairy: object) -> None:
        if self.holder is fairy:
            self.holder = None
            self.lock.release()

    def install(self, engine: Engine) -> None:
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(fairy: Any) -> None:
            try:
                commit(fairy)
            finally:
                self.release(fairy)

        def do_rollback(fairy: Any) -> None:
            try:
                rollback(fairy)
            finally:
                self.release(fairy)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]
        event.listen(engine, "begin", self.begin)


def make_engine(url: str | None = None) -> Engine:
    url = url or DEFAULT_URL
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8,
                               pool_use_lifo=True)
        event.listen(engine, "connect", _prepare_sqlite)
        _WriteLock().install(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    raise ValueError(f"QUOTAMETER_DATABASE_URL: unsupported database {parsed.get_backend_name()!r} "
                     "(use sqlite:///path or postgresql+psycopg://…)")


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back whole on any error.

    Services take the connection and never commit; the request or the job owns this.
    """
    with engine.begin() as conn:
        yield conn


def _transient(err: BaseException) -> bool:
    # PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled
    # back whole, so running it again is safe (event ids make a retried ingest idempotent).
    return isinstance(err, DBAPIError) and getattr(err.orig, "sqlstate", None) in {"40P01", "40001"}


retry_transient = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(5),
                        wait=wait_random_exponential(multiplier=0.01, max=0.5), reraise=True)


def lock_keys(conn: Connection, keys: Iterable[str], *, shared: bool = False) -> None:
    """Serialize writers of the same derived state across processes.

    SQLite already serializes every write transaction (BEGIN IMMEDIATE). On PostgreSQL we
    take transaction-scoped advisory locks, always in sorted order so that two batches
    touching the same keys cannot deadlock. `shared` locks (one statement for all keys) do
    not exclude each other, only a holder of the same key's exclusive lock.
    """
    if conn.dialect.name != "postgresql":
        return
    ids = sorted({int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
                  for k in keys})
    if shared:
        if ids:
            conn.execute(_SHARED, {"ids": ids})
        return
    if ids:
        conn.execute(_EXCLUSIVE, {"ids": ids})


_SHARED = text("SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(CAST(:ids AS bigint[])) AS k")
# One statement for all keys, taken in the array's (sorted) order: WITH ORDINALITY numbers
# the elements and the ORDER BY in the aggregate makes PostgreSQL call the lock function row
# by row in that order (a plain unnest leaves the order to the planner).
_EXCLUSIVE = text("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) "
                  "WITH ORDINALITY AS u(k, n) ORDER BY n) AS taken")


def on_commit(engine: Engine, tables: Iterable[Table], callback: Callable[[set[str]], None]) -> None:
    """Call `callback` with the customers of the rows each transaction on `engine` inserted
    into `tables`, once it committed and its connection is back in the pool (so that whoever
    is told finds the rows visible). Rolled-back inserts are forgotten. Only this process's
    transactions are seen."""
    watched = tuple(tables)
    written, committed = object(), object()  # this registration's keys in the connection's info

    def inserted(conn: Connection, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        if context is None or not context.isinsert:
            return
        table = getattr(context.compiled.statement, "table", None)
        if table is None or not any(table is t for t in watched):
            return
        names = {p.get("customer") for p in context.compiled_parameters or ()}
        conn.info.setdefault(written, set()).update(n for n in names if isinstance(n, str))

    def commit(conn: Connection) -> None:
        names = conn.info.pop(written, None)
        if names:
            conn.info.setdefault(committed, set()).update(names)

    def rollback(conn: Connection) -> None:
        conn.info.pop(written, None)

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        names = record.info.pop(committed, None) if record is not None else None
        if names:
            callback(names)

    event.listen(engine, "after_cursor_execute", inserted)
    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    event.listen(engine.pool, "checkin", checkin)
