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
from typing import Any

from sqlalchemy import Engine, event

from quotameter.worker import Worker

log = logging.getLogger("quotameter.checkpoint")


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer(Worker):
    def __init__(self, engine: Engine, every: float = 0.2) -> None:
        super().__init__("checkpoint", every, backoff_max=30.0, logger=log)
        self.engine = engine

    def start(self) -> None:
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # connections opened before keep their automatic checkpoint
        super().start()

    def stop(self) -> None:
        super().stop()
        if event.contains(self.engine, "connect", _no_autocheckpoint):  # lifespans may overlap
            event.remove(self.engine, "connect", _no_autocheckpoint)
        self.checkpoint()  # leave the log copied back as far as it can be

    def step(self) -> None:
        self.checkpoint()

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, frames in the log, frames copied back), as SQLite reports them."""
        raw = self.engine.raw_connection()
        try:
            busy, frames, copied = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(busy), int(frames), int(copied)
        finally:
            raw.close()
