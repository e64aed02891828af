"""Engines for the embedded SQLite default and for PostgreSQL, and the unit of work."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, TextClause, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from quotameter.errors import Overloaded

DEFAULT_URL = "sqlite:///quotameter.sqlite3"
T = TypeVar("T")

# How long background work (the scheduler, delivery, the finalizer, the CLI, migrations)
# waits for the write lock: it has no client to answer, so it waits its turn.
PATIENT_SECONDS = 30.0

# How long a write unit of the current context may wait for the write lock before it is
# refused with `Overloaded` (HTTP 503); None: patiently. `server.BoundedWrites` sets it for
# each HTTP request (QUOTAMETER_WRITE_WAIT_SECONDS); everything else leaves it unset.
write_wait: ContextVar[float | None] = ContextVar("quotameter_write_wait", default=None)

# The execution option that marks a connection as a write unit's (`unit_of_work`): its
# deadline (time.monotonic) and `write_wait`.
_WRITES = "quotameter_writes"
_OWN_BUSY_MS = "quotameter_busy_ms"  # in a pooled SQLite connection's info: its busy_timeout


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


SQLITE_CACHE_KIB = 64 * 1024
# The write-ahead log's bound: serve's checkpointer has it started over past this size
# (store.checkpoint), and a log started over is cut back to it.
SQLITE_LOG_KEPT_BYTES = 64 * 1024 * 1024


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
    # Pages kept per connection. SQLite's default (2 MiB) holds only the top of a period's
    # event and span indexes: each write then reads their lower pages again, and a batch's
    # cost grows with the history stored. Filled only as pages are read.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    # A log started over is cut back to this size (it keeps its largest size otherwise).
    cur.execute(f"PRAGMA journal_size_limit={SQLITE_LOG_KEPT_BYTES}")
    cur.close()
    dbapi_conn.create_function("dec_add", 2, _dec_add, deterministic=True)
    dbapi_conn.create_function("dec_max", 2, _dec_max, deterministic=True)
    aggregate = dbapi_conn.create_aggregate
    aggregate("dec_sum", 1, _DecSum)  # type: ignore[arg-type]  # why: typeshed types step(int)
    aggregate("dec_maxagg", 1, _DecMax)  # type: ignore[arg-type]  # why: typeshed types step(int)


# SQLite has one write lock per database file, and a connection that finds it taken sleeps in
# SQLite's busy handler (1, 2, 5, 10 … 100 ms steps) however soon it is freed. The threads of
# one process take turns on this lock (one per engine's dialect, which outlives `dispose`)
# instead: the next starts the moment the last one's transaction ends, and only then takes a
# pooled connection, so waiting writers never hold the connections that reads need. Other
# processes still meet the busy handler.
_WRITE_TURNS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()


@contextmanager
def writers_held(engine: Engine) -> Iterator[None]:
    """This process's writers wait for their turn while the block runs (SQLite; on PostgreSQL
    nothing is held)."""
    with _write_turn(engine, time.monotonic() + PATIENT_SECONDS, None):
        yield


@contextmanager
def _write_turn(engine: Engine, deadline: float, wait: float | None) -> Iterator[None]:
    turn = _WRITE_TURNS.get(engine.dialect)
    if turn is None:  # PostgreSQL: writers wait on the locks of what they write
        yield
        return
    if not turn.acquire(timeout=max(0.0, deadline - time.monotonic())):
        if wait is not None:
            raise overloaded(wait)
        raise TimeoutError(
            f"database: other transactions of this process held the write lock for "
            f"{PATIENT_SECONDS:g} s"
        )
    try:
        yield
    finally:
        turn.release()


def _begin_sqlite(conn: Connection) -> None:
    """Every SQLite transaction's BEGIN (pysqlite's own handling is off). A write unit's is
    BEGIN IMMEDIATE: it takes the file's write lock at once, so its writes cannot fail to
    upgrade a read lock later. Any other is a deferred BEGIN: in WAL mode a snapshot that
    neither waits for writers nor holds them up, so no read ever queues behind a long write."""
    writes = conn.get_execution_options().get(_WRITES)
    if writes is None:
        conn.exec_driver_sql("BEGIN")
        return
    deadline, wait = writes
    if wait is None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the connection's own busy_timeout
    else:
        _begin_immediate_within(conn, deadline - time.monotonic(), wait)


def _begin_immediate_within(conn: Connection, left: float, wait: float) -> None:
    """BEGIN IMMEDIATE, waiting at most `left` seconds for another process's write lock (the
    connection's own busy_timeout is put back after), else `Overloaded`."""
    own = conn.info.get(_OWN_BUSY_MS)
    if own is None:
        own = conn.info[_OWN_BUSY_MS] = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    bound = max(0, math.ceil(left * 1000))
    if bound >= own:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    conn.exec_driver_sql(f"PRAGMA busy_timeout={bound}")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except DBAPIError as err:
        if busy(err):
            raise overloaded(wait) from err
        raise
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={own}")


def overloaded(wait: float) -> Overloaded:
    seconds = retry_after(wait)
    return Overloaded(
        f"database: busy with other writes for over {wait:g} s; nothing was stored, "
        f"send it again in {seconds} s",
        retry_after=seconds,
    )


def retry_after(wait: float) -> int:
    """The Retry-After (whole seconds, at least 1) of a unit refused after waiting `wait` s."""
    return max(1, math.ceil(wait))


# PostgreSQL states of a transaction that lost to others and was rolled back whole:
# serialization_failure, deadlock_detected, lock_not_available (lock_timeout),
# query_canceled (statement_timeout), too_many_connections.
_PG_CONTENTION = {"40001", "40P01", "55P03", "57014", "53300"}
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def busy(err: BaseException) -> bool:
    """Whether `err` says the database was too busy to do the work, which was not done
    (nothing of the transaction is kept): worth answering 503 and trying again later. The
    driver's own errors count too (a repository may use the driver's cursor directly)."""
    if isinstance(err, PoolTimeout):
        return True
    orig = err.orig if isinstance(err, DBAPIError) else err
    if isinstance(orig, sqlite3.OperationalError):
        return getattr(orig, "sqlite_errorcode", 0) & 0xFF in {_SQLITE_BUSY, _SQLITE_LOCKED} or str(
            orig
        ).startswith(("database is locked", "database table is locked"))
    return getattr(orig, "sqlstate", None) in _PG_CONTENTION


@contextmanager
def bounded_writes(seconds: float) -> Iterator[None]:
    """Within the block, write units of this context wait at most `seconds` for the write lock."""
    token = write_wait.set(seconds)
    try:
        yield
    finally:
        write_wait.reset(token)


def patiently(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` with this context's write units waiting patiently: for work a request
    started that has no answer left to give, like a stream already open."""
    token = write_wait.set(None)
    try:
        return fn(*args)
    finally:
        write_wait.reset(token)


# Per statement and dialect: its SQL in the driver's parameter style, and the order of its
# parameters where that style is positional.
_DRIVER_SQL: dict[tuple[int, str], tuple[str, list[str] | None]] = {}


def driver_sql(engine: Engine, statement: TextClause) -> tuple[str, list[str] | None]:
    """The statement's SQL in the driver's parameter style, and the order of its parameters
    where that style is positional (None: they go by name); compiled once per dialect."""
    key = (id(statement), engine.dialect.name)
    found = _DRIVER_SQL.get(key)
    if found is None:
        compiled = statement.compile(dialect=engine.dialect)
        found = _DRIVER_SQL[key] = (str(compiled), compiled.positiontup)
    return found


def one_row(engine: Engine, statement: TextClause, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The one row of a one-statement read, on the driver's own cursor and outside any
    transaction (a single statement reads one snapshot anyway): for a read asked on every
    request, SQLAlchemy's connection, transaction and result objects cost more than the
    query. A pooled connection found dead (the database restarted) is replaced, and the
    read asked once more."""
    sql, order = driver_sql(engine, statement)
    args = params if order is None else tuple(params[name] for name in order)
    for attempt in (1, 2):
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, args)
            row = cursor.fetchone()
            cursor.close()
        except engine.dialect.loaded_dbapi.Error as err:
            if attempt == 1 and engine.dialect.is_disconnect(err, raw.dbapi_connection, None):
                raw.invalidate(err)
                continue
            raw.close()
            raise
        raw.close()
        if row is None:
            raise LookupError(f"no row from {sql}")
        return tuple(row)
    raise AssertionError("unreachable: the second attempt returns or raises")


def make_engine(url: str | None = None) -> Engine:
    url = url or DEFAULT_URL
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        # Room for every thread that may read at once (the threadpool's 40, the background
        # workers') beside a read on the event loop: a read must never wait for a connection,
        # which would freeze the loop. Writers take a connection only in their turn (one).
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_size=8,
            max_overflow=56,
            pool_use_lifo=True,
        )
        event.listen(engine, "connect", _prepare_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        _WRITE_TURNS[engine.dialect] = threading.Lock()
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    raise ValueError(
        f"QUOTAMETER_DATABASE_URL: unsupported database {parsed.get_backend_name()!r} "
        "(use sqlite:///path or postgresql+psycopg://…)"
    )


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back whole on any error.

    Services take the connection and never commit; the request or the job owns this. It
    waits for the write lock (SQLite's, or PostgreSQL's row and advisory locks) at most
    `write_wait` seconds when that is set (an HTTP request), else `Overloaded`; reads use
    `engine.connect()`, which never waits for writers.
    """
    wait = write_wait.get()
    deadline = time.monotonic() + (PATIENT_SECONDS if wait is None else wait)
    with _write_turn(engine, deadline, wait), engine.connect() as conn:
        conn.execution_options(**{_WRITES: (deadline, wait)})
        with conn.begin():
            if wait is not None and conn.dialect.name == "postgresql":
                # Transaction-scoped: lock waits (advisory, row, unique key) fail with 55P03.
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, math.ceil(wait * 1000))}")
            yield conn


def _transient(err: BaseException) -> bool:
    # PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled
    # back whole, so running it again is safe (event ids make a retried ingest idempotent).
    # Raised through SQLAlchemy or by the driver's own cursor (events/repository.py).
    orig = err.orig if isinstance(err, DBAPIError) else err
    return getattr(orig, "sqlstate", None) in {"40P01", "40001"}


retry_transient = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    reraise=True,
)


def lock_keys(conn: Connection, keys: Iterable[str], *, shared: bool = False) -> None:
    """Serialize writers of the same derived state across processes.

    SQLite already serializes every write transaction (BEGIN IMMEDIATE). On PostgreSQL we
    take transaction-scoped advisory locks, always in sorted order so that two batches
    touching the same keys cannot deadlock. `shared` locks (one statement for all keys) do
    not exclude each other, only a holder of the same key's exclusive lock.
    """
    if conn.dialect.name != "postgresql":
        return
    ids = sorted(
        {
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
            for k in keys
        }
    )
    if shared:
        if ids:
            conn.execute(_SHARED, {"ids": ids})
        return
    if ids:
        conn.execute(_EXCLUSIVE, {"ids": ids})


_SHARED = text(
    "SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(CAST(:ids AS bigint[])) AS k"
)
# One statement for all keys, taken in the array's (sorted) order: WITH ORDINALITY numbers
# the elements and the ORDER BY in the aggregate makes PostgreSQL call the lock function row
# by row in that order (a plain unnest leaves the order to the planner).
_EXCLUSIVE = text(
    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) "
    "WITH ORDINALITY AS u(k, n) ORDER BY n) AS taken"
)


def on_commit(
    engine: Engine, tables: Iterable[Table], callback: Callable[[set[str]], None]
) -> None:
    """Call `callback` with the customers of the rows each transaction on `engine` inserted
    into `tables`, once it committed and its connection is back in the pool (so that whoever
    is told finds the rows visible). Rolled-back inserts are forgotten. Only this process's
    transactions are seen."""
    watched = tuple(tables)
    written, committed = object(), object()  # this registration's keys in the connection's info

    def inserted(
        conn: Connection, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
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
