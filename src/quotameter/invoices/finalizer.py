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
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from quotameter.catalog.service import CatalogCache
from quotameter.invoices.service import FinalizerState, finalize_due
from quotameter.worker import Worker

log = logging.getLogger("quotameter.invoices")


class Finalizer(Worker):
    def __init__(
        self,
        engine: Engine,
        catalogs: CatalogCache,
        clock: Callable[[], datetime],
        grace: timedelta,
        poll: float = 60.0,
        backoff_max: float = 600.0,
    ) -> None:
        super().__init__("invoices", poll, backoff_max=backoff_max, logger=log)
        self.engine, self.catalogs, self.clock, self.grace = engine, catalogs, clock, grace
        self.state = FinalizerState()

    def run_once(self) -> int:
        """One pass at the clock's now; how many invoices it finalized."""
        made = finalize_due(
            self.engine, self.catalogs, self.clock(), self.grace, self.state, after_last_change=True
        )
        if made:
            log.info("finalized %d invoice(s)", made)
        return made

    def step(self) -> None:
        """A pass of the loop (its count is logged)."""
        self.run_once()
