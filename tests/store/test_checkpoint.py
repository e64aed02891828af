"""SQLite: serve copies the write-ahead log back on a thread of its own, not in a writer's
commit."""

from __future__ import annotations

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
