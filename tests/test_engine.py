"""SQLite's write lock, taken in turn by the threads of one process (store/engine.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

from quotameter.store.engine import make_engine, unit_of_work


@pytest.fixture
def impatient(tmp_path: Path) -> Engine:
    """A SQLite engine whose connections give up at once on a taken lock (no busy handler):
    any collision between two of its own transactions is an error, not a wait."""
    engine = make_engine(f"sqlite:///{tmp_path / 'lock.sqlite3'}")
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=0"))
    with unit_of_work(engine) as conn:
        conn.execute(text("CREATE TABLE tally (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO tally VALUES (0)"))
    yield engine
    engine.dispose()


def test_threads_take_the_write_lock_in_turn_and_never_meet_sqlite_busy(impatient: Engine) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        try:
            for _ in range(40):
                with unit_of_work(impatient) as conn:
                    n = conn.execute(text("SELECT n FROM tally")).scalar_one()
                    conn.execute(text("UPDATE tally SET n = :n"), {"n": n + 1})
                with impatient.connect() as conn:  # a read, beside the writers
                    conn.execute(text("SELECT n FROM tally")).scalar_one()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with impatient.connect() as conn:
        assert conn.execute(text("SELECT n FROM tally")).scalar_one() == 8 * 40  # no lost update


def test_a_transaction_that_fails_leaves_the_lock_to_the_next(impatient: Engine) -> None:
    with pytest.raises(ZeroDivisionError), unit_of_work(impatient) as conn:
        conn.execute(text("UPDATE tally SET n = 99"))
        1 / 0  # noqa: B018 - the block fails mid-transaction
    with pytest.raises(Exception, match="no such table"), unit_of_work(impatient) as conn:
        conn.execute(text("SELECT * FROM missing"))  # a statement that fails
    done = threading.Event()

    def write() -> None:
        with unit_of_work(impatient) as conn:
            conn.execute(text("UPDATE tally SET n = n + 1"))
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the write lock was not released by the failed transactions"
    with impatient.connect() as conn:
        assert (
            conn.execute(text("SELECT n FROM tally")).scalar_one() == 1
        )  # the failed update rolled back


def test_a_read_neither_waits_for_a_writer_nor_sees_its_uncommitted_rows(impatient: Engine) -> None:
    """Reads are deferred WAL snapshots: with no busy handler at all, a read beside an open
    write transaction of this process (which holds the write lock) answers at once."""
    with unit_of_work(impatient) as writer:
        writer.execute(text("UPDATE tally SET n = 7"))
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(_tally(impatient)))
        reader.start()
        reader.join(10)
        assert seen == [0]
    assert _tally(impatient) == 7


def _tally(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT n FROM tally")).scalar_one())


def test_a_deadlock_raised_by_the_driver_itself_is_retried() -> None:
    import psycopg

    from quotameter.store.engine import retry_transient

    calls: list[int] = []

    @retry_transient
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected()
        return "done"

    assert flaky() == "done" and len(calls) == 3


def test_a_sqlite_connection_is_durable_and_keeps_a_large_page_cache(tmp_path: Path) -> None:
    """WAL with a sync at every commit, and room for the pages of a large period's indexes
    (SQLite's own default, 2 MiB, makes a write's cost grow with the history stored)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.sqlite3'}")
    try:
        with engine.connect() as conn:
            read = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "synchronous", "cache_size", "journal_size_limit")
            }
        # synchronous 2 is FULL; a negative cache size is in KiB: 64 MiB
        assert read == {
            "journal_mode": "wal",
            "synchronous": 2,
            "cache_size": -64 * 1024,
            "journal_size_limit": 64 * 1024 * 1024,  # a log started over is cut back to 64 MiB
        }
    finally:
        engine.dispose()
