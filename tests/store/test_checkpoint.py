"""SQLite: serve copies the write-ahead log back on a thread of its own, not in a writer's
commit."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from quotameter.store.checkpoint import Checkpointer
from quotameter.store.engine import make_engine, unit_of_work


def test_writers_no_longer_checkpoint_and_the_checkpointer_copies_the_log_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    with unit_of_work(engine) as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
    checkpointer = Checkpointer(
        engine, every=3600
    )  # its thread stays idle: the test checkpoints by hand
    checkpointer.start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for _ in range(3):  # well past the 1,000 pages at which a writer would checkpoint
            with unit_of_work(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 3000}] * 600)
        assert (
            path.stat().st_size < 100_000
        )  # 5 MB written, all still in the log: no writer copied it back
        busy, frames, copied = checkpointer.checkpoint()
        assert busy == 0 and frames > 1000 and copied == frames
        assert path.stat().st_size > 5_000_000
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1800
    finally:
        checkpointer.stop()
    engine.dispose()
    with engine.connect() as conn:  # connections opened after it stopped checkpoint as usual
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000


def test_the_log_stays_bounded_while_reads_and_writes_never_pause(tmp_path: Path) -> None:
    """Under a steady feed a passive checkpoint never finds the log all copied back (a write
    lands while it copies, a read holds an older snapshot), and SQLite then never starts the
    log over: it grows by every page ever written. Past a bound the checkpointer holds this
    process's writers back, copies the rest and has the log started over."""
    path = tmp_path / "busy.sqlite3"
    wal = Path(f"{path}-wal")
    engine = make_engine(f"sqlite:///{path}")
    with unit_of_work(engine) as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
    checkpointer = Checkpointer(engine, every=3600, restart_frames=256)  # 1 MiB of 4 KiB pages
    checkpointer.start()
    writes = 120
    written = threading.Event()
    largest = 0

    def write() -> None:
        for _ in range(writes):  # 80 pages each: 40 MB in all
            with unit_of_work(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 4000}] * 80)
        written.set()

    def read() -> None:
        while not written.is_set():
            with engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM t")).scalar_one()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    try:
        for thread in threads:
            thread.start()
        while not written.is_set():
            checkpointer.checkpoint()
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        for thread in threads:
            thread.join()
    finally:
        checkpointer.stop()
        engine.dispose()
    assert largest < 8 * 1024 * 1024, f"the log grew to {largest / 2**20:.1f} MiB"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == writes * 80


def test_a_reader_that_stays_on_the_log_holds_writers_back_once_per_doubling(
    tmp_path: Path,
) -> None:
    """Starting the log over waits for readers; one that stays (a long report) is tried again
    only once the log has doubled, so the writers are not held back at every step."""
    engine = make_engine(f"sqlite:///{tmp_path / 'long.sqlite3'}")
    with unit_of_work(engine) as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
    # restart_wait=0: a reader on the log makes the try give up at once
    checkpointer = Checkpointer(engine, every=3600, restart_frames=64, restart_wait=0)
    checkpointer.start()

    def write(pages: int) -> None:
        with unit_of_work(engine) as conn:
            conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 4000}] * pages)

    try:
        write(100)
        with engine.connect() as reader:
            reader.execute(text("SELECT count(*) FROM t")).scalar_one()  # holds its snapshot
            write(100)
            busy, frames, _ = checkpointer.checkpoint()
            assert busy and frames > 200
            assert checkpointer.restart_past == 2 * frames  # tried, held off: wait for twice
            write(10)
            busy, more, _ = checkpointer.checkpoint()
            assert frames < more < 2 * frames
            assert checkpointer.restart_past == 2 * frames  # not tried again
        write(frames)  # the reader is gone; the log passes twice its size
        busy, _, _ = checkpointer.checkpoint()
        assert not busy and checkpointer.restart_past == 64
        write(1)
        _, frames, _ = checkpointer.checkpoint()
        assert frames < 10  # the writer started the log over
    finally:
        checkpointer.stop()
        engine.dispose()
