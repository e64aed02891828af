"""The base of the background workers: passes, wake-ups, stop, and the wait after failures.

Nothing here waits for time to pass: the intervals are an hour, and every pass after the
first is brought by `wake` (or a shared event); a test waits only for a pass to report.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

import pytest

from quotameter.worker import Worker

HOUR = 3600.0
PATIENCE = 10.0  # how long a test waits for a pass that should come at once


class Recorder(Worker):
    """Runs the steps it is given in turn (each returns the wait it asks for, or raises), and
    reports each pass on a queue."""

    def __init__(
        self,
        steps: list[Callable[[], float | None]] | None = None,
        *,
        interval: float = HOUR,
        **options: object,
    ) -> None:
        super().__init__("recorder", interval, **options)  # type: ignore[arg-type]
        self.steps = list(steps or [])
        self.passes: queue.Queue[int] = queue.Queue()
        self.count = 0

    def step(self) -> float | None:
        self.count += 1
        self.passes.put(self.count)
        return self.steps.pop(0)() if self.steps else None

    def next_pass(self) -> int:
        return self.passes.get(timeout=PATIENCE)

    def no_pass_yet(self) -> bool:
        return self.passes.empty()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger("quotameter.test_worker")
    handler = Records()
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def fails() -> float | None:
    raise RuntimeError("the database is away")


def test_a_started_worker_runs_a_pass_at_once_and_another_when_woken() -> None:
    w = Recorder()
    w.start()
    try:
        assert w.next_pass() == 1
        w.wake()
        assert w.next_pass() == 2
        w.wake()
        assert w.next_pass() == 3
    finally:
        w.stop()
    assert w._thread is not None and not w._thread.is_alive()
    assert w._thread.name == "quotameter-recorder"


def test_a_wake_up_during_a_pass_brings_one_more_pass() -> None:
    inside, go_on = threading.Event(), threading.Event()

    def blocks() -> float | None:
        inside.set()
        assert go_on.wait(PATIENCE)
        return None

    w = Recorder([blocks])
    w.start()
    try:
        assert w.next_pass() == 1
        assert inside.wait(PATIENCE)
        w.wake()  # while the first pass runs
        go_on.set()
        assert w.next_pass() == 2
    finally:
        w.stop()


def test_an_event_shared_with_others_wakes_the_worker() -> None:
    shared = threading.Event()
    w = Recorder(wake_event=shared)
    w.start()
    try:
        assert w.next_pass() == 1
        shared.set()  # e.g. set after each committed batch
        assert w.next_pass() == 2
    finally:
        w.stop()
    assert w._thread is not None and not w._thread.is_alive()


def test_stop_ends_the_wait_joins_and_may_be_called_again() -> None:
    w = Recorder()
    w.start()
    assert w.next_pass() == 1
    w.stop()  # the worker waits for an hour: stop ends that wait
    assert w._thread is not None and not w._thread.is_alive() and w.stopping
    w.stop()
    assert w.count == 1


def test_stop_ends_the_coalescing_wait_too() -> None:
    w = Recorder(coalesce=HOUR)
    w.start()
    assert w.next_pass() == 1
    w.wake()  # the worker now lets wake-ups gather for an hour
    w.stop()
    assert w._thread is not None and not w._thread.is_alive()
    assert w.count == 1


def test_a_worker_never_started_stops_and_one_started_starts_once() -> None:
    Recorder().stop()
    w = Recorder()
    w.start()
    try:
        with pytest.raises(RuntimeError, match="recorder: already started"):
            w.start()
    finally:
        w.stop()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="recorder: the interval must be positive"):
        Recorder(interval=0)


def test_a_pass_waits_the_interval_or_less_when_it_asks() -> None:
    w = Recorder([lambda: None, lambda: 5.0, lambda: HOUR * 2, lambda: -1.0], interval=60.0)
    assert [w.run_pass() for _ in range(4)] == [60.0, 5.0, 60.0, 0.0]


def test_failures_back_off_doubling_up_to_the_cap_and_a_success_resets(
    records: tuple[logging.Logger, Records],
) -> None:
    logger, handler = records
    w = Recorder([fails] * 6 + [lambda: None, fails], interval=2.0, backoff_max=30.0, logger=logger)
    delays = [w.run_pass() for _ in range(8)]
    assert delays == [4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 2.0, 4.0]
    assert w.failures == 1
    assert len(handler.records) == 7
    first = handler.records[0]
    assert first.levelno == logging.ERROR and first.exc_info is not None
    assert first.getMessage() == "recorder: pass failed (1 in a row; next in 4 s)"
    assert isinstance(first.exc_info[1], RuntimeError)


def test_the_cap_is_never_below_the_interval_and_many_failures_stay_capped() -> None:
    w = Recorder(interval=60.0, backoff_max=10.0)
    assert w.backoff_max == 60.0
    assert w.backoff(0) == 60.0
    assert w.backoff(1) == 60.0
    assert Recorder(interval=1.0, backoff_max=300.0).backoff(10_000) == 300.0


def test_a_failing_pass_does_not_end_the_thread(records: tuple[logging.Logger, Records]) -> None:
    logger, handler = records
    w = Recorder([fails], logger=logger)
    w.start()
    try:
        assert w.next_pass() == 1
        w.wake()  # a wake-up runs the next pass at once, also while backing off
        assert w.next_pass() == 2
    finally:
        w.stop()
    assert [r.getMessage() for r in handler.records] == [
        "recorder: pass failed (1 in a row; next in 3600 s)"
    ]
    assert w.failures == 0
