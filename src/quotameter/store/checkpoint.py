"""SQLite: the write-ahead log is copied back into the database by a thread of its own.

By default the writer whose COMMIT takes the log past 1,000 pages copies it back itself,
inside its transaction's time, while the next writers wait for the lock: under a live feed
for many customers that is most of a commit's time. `serve` instead turns the automatic
checkpoint off on its connections and runs a passive checkpoint (it never waits for a writer
or a reader, and copies what no reader still needs) every `every` seconds on another thread,
where it overlaps the writers' work. Other processes on the same file (the CLI) keep the
automatic checkpoint; a checkpoint from any of them serves all.

SQLite starts the log over only when a writer begins with all of it copied back and no
reader still on it. Under a steady feed a passive checkpoint never gets there (a commit lands
while it copies, a read holds an older snapshot), and the log would grow by every page ever
written: gigabytes a day. Past `restart_frames` the checkpointer therefore holds this
process's writers back for a moment, copies the rest and waits (at most `restart_wait`
seconds) for the readers to leave the log, so that the next writer starts it over. When a
reader stays on the log (a long report), the next try waits until the log has doubled: a
long read costs the writers one short pause per doubling, not one every step.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import Engine, event

from quotameter.store.engine import SQLITE_LOG_KEPT_BYTES, writers_held
from quotameter.worker import Worker

log = logging.getLogger("quotameter.checkpoint")

RESTART_FRAMES = SQLITE_LOG_KEPT_BYTES // 4096  # frames of SQLite's 4 KiB pages: 16,384


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer(Worker):
    def __init__(
        self,
        engine: Engine,
        every: float = 0.2,
        restart_frames: int = RESTART_FRAMES,
        restart_wait: float = 0.1,
    ) -> None:
        super().__init__("checkpoint", every, backoff_max=30.0, logger=log)
        self.engine = engine
        self.restart_frames = restart_frames
        self.restart_wait = restart_wait
        self.restart_past = restart_frames  # doubled by each try that readers held off

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
            cur = raw.cursor()
            busy, frames, copied = cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > self.restart_past:
                busy, frames, copied = self._restart(cur)
                self.restart_past = 2 * frames if busy else self.restart_frames
            return int(busy), int(frames), int(copied)
        finally:
            raw.close()

    def _restart(self, cur: Any) -> tuple[int, int, int]:
        """A checkpoint that leaves the log to be started over, with this process's writers
        held back (the passive one just before copied most of it)."""
        with writers_held(self.engine):
            own = cur.execute("PRAGMA busy_timeout").fetchone()[0]
            cur.execute(f"PRAGMA busy_timeout={math.ceil(self.restart_wait * 1000)}")
            try:
                busy, frames, copied = cur.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                cur.execute(f"PRAGMA busy_timeout={own}")
        if busy:
            log.debug("log not started over: readers stayed on it", extra={"frames": frames})
        return busy, frames, copied
