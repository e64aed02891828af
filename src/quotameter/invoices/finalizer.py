"""The loop inside `serve` that finalizes invoices once their grace window has passed.

Each pass (`run_once`) calls `service.finalize_due` with the injected clock and the state the
loop keeps; any number of processes may run it (the unique key finalizes each period once).
A period is finalized at the first pass once a grace window has passed since its end and
since its last change: a late event that makes an earlier period billable is seen at the
next pass, and the period is frozen a grace window after it (the rest of a backfill may
still be on its way).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from quotameter.catalog.service import CatalogCache
from quotameter.invoices.service import FinalizerState, finalize_due

log = logging.getLogger("quotameter.invoices")


class Finalizer:
    def __init__(
        self,
        engine: Engine,
        catalogs: CatalogCache,
        clock: Callable[[], datetime],
        grace: timedelta,
        poll: float = 60.0,
    ) -> None:
        self.engine, self.catalogs, self.clock, self.grace, self.poll = (
            engine,
            catalogs,
            clock,
            grace,
            poll,
        )
        self._stop = threading.Event()
        self.state = FinalizerState()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quotameter-invoices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        """One pass at the clock's now; how many invoices it finalized."""
        made = finalize_due(
            self.engine, self.catalogs, self.clock(), self.grace, self.state, after_last_change=True
        )
        if made:
            log.info("finalized %d invoice(s)", made)
        return made

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("invoice finalization failed")
            self._stop.wait(self.poll)
