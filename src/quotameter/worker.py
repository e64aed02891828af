"""Background workers: a thread that runs a pass every so often, and at once when woken.

A worker runs `step` (the pass its subclass implements) on a thread of its own, then waits
on its wake event for `interval` seconds, or less when the pass asks to run again sooner.
`wake` ends the wait at once (a commit that leaves work for the worker sets it). A pass
that raises is logged with the worker's name, and the wait before the next pass doubles at
each failure in a row, up to `backoff_max`; the first pass that succeeds brings it back to
`interval`. A wake-up runs the next pass at once, failing or not.

Nothing here reads a clock: waits are timeouts of `threading.Event.wait`, and the passes
take their instants from the clock their worker was given.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger("quotameter.worker")


class Worker(ABC):
    """Subclasses implement `step`; `start` runs the passes on a daemon thread named
    `quotameter-{name}`, `stop` ends them."""

    def __init__(
        self,
        name: str,
        interval: float,
        *,
        backoff_max: float = 300.0,
        coalesce: float = 0.0,
        join_timeout: float = 10.0,
        wake_event: threading.Event | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """`coalesce`: after a wake-up, wait this long (or until `stop`) before the pass, so
        that the wake-ups coming meanwhile are served by the same pass. `wake_event`: an event
        others set to wake the worker (by default one of its own; `wake` sets it)."""
        if interval <= 0:
            raise ValueError(f"{name}: the interval must be positive, not {interval}")
        self.name = name
        self.interval = interval
        self.backoff_max = max(backoff_max, interval)
        self.coalesce = coalesce
        self.join_timeout = join_timeout
        self.failures = 0  # failed passes in a row
        self.log = logger or log
        self._woken = wake_event if wake_event is not None else threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def step(self) -> float | None:
        """One pass. It may return in how many seconds it wants the next one, if sooner than
        the interval (zero or less: at once)."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._thread = threading.Thread(
            target=self._run, name=f"quotameter-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the passes and wait (at most `join_timeout`) for the one running; once or more."""
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout)

    def wake(self) -> None:
        """Run a pass now (once the one running, if any, is done)."""
        self._woken.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_pass(self) -> float:
        """Run `step`, logging what it raises; the seconds to wait before the next pass."""
        try:
            wanted = self.step()
        except Exception:
            self.failures += 1
            delay = self.backoff(self.failures)
            self.log.exception(
                "%s: pass failed (%d in a row; next in %g s)", self.name, self.failures, delay
            )
            return delay
        self.failures = 0
        if wanted is None:
            return self.interval
        return min(self.interval, max(0.0, wanted))

    def backoff(self, failures: int) -> float:
        """The wait after `failures` failed passes in a row: twice the interval after the first,
        doubling at each next one, never more than `backoff_max`."""
        if failures <= 0:
            return self.interval
        # Past 64 doublings every interval is over any cap; the bound keeps the power small.
        return min(self.backoff_max, self.interval * 2.0 ** min(failures, 64))

    def _run(self) -> None:
        while True:
            # Cleared before looking at `stop`: a stop coming after either is seen at once.
            self._woken.clear()
            if self._stopping.is_set():
                return
            delay = self.run_pass()
            if self._woken.wait(delay) and self.coalesce > 0:
                self._stopping.wait(self.coalesce)
