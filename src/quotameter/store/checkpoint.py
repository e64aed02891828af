"""SQLite: the write-ahead log is copied back into the database by a thread of its own.

By default the writer whose COMMIT takes the log past 1,000 pages copies it back itself,
inside its transaction's time, while the next writers wait for the lock: under a live feed
for many customers that is most of a commit's time. `serve` instead turns the automatic
checkpoint off on its connections and runs a passive checkpoint (it never waits for a writer
or a reader, and copies what no reader still needs) every `every` seconds on another thread,
where it overlaps the writers' work. Other processes on the same file (the CLI) keep the
automatic checkpoint; a checkpoint from any of them serves all.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine, event

log = logging.getLogger("quotameter.checkpoint")


def _no_autocheckpoint(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer:
    def __init__(self, engine: Engine, every: float = 0.2) -> None:
        self.engine, self.every = engine, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # connections opened before keep their automatic checkpoint: replace them
        self._thread = threading.Thread(target=self._run, name="quotameter-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if event.contains(
            self.engine, "connect", _no_autocheckpoint
        ):  # an app's lifespans may overlap
            event.remove(self.engine, "connect", _no_autocheckpoint)
        self.checkpoint()  # leave the log copied back as far as it can be

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, frames in the log, frames copied back), as SQLite reports them."""
        raw = self.engine.raw_connection()
        try:
            row = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            busy, written, copied = row
            return busy, written, copied
        finally:
            raw.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.checkpoint()
            except Exception:
                log.exception("checkpoint failed")
