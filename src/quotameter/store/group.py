"""Group commit: work that arrives while another writer holds the turn is written together.

Every write transaction pays a fixed price (its BEGIN, its COMMIT, the write-ahead log's
sync) and dirties at least one page per index it touches per customer. When batches of a
live feed for many customers queue for the write lock, writing the queued ones in one
transaction pays that price once and shares the pages of each customer between them: on
SQLite, four batches of 1,000 events for 1,000 organizations write about 30 % faster
together than one by one.

The first submitter to find no writer leads: it writes what is queued (up to `max_items`,
its own first) through `write`, hands each submitter its own result, then passes the lead
to the oldest submitter still queued. Nobody polls and nobody sleeps: a submitter waits for
its result or its turn to lead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result", "wake")

    result: R  # set by `succeed` alone: read only once done without an error

    def __init__(self, item: T) -> None:
        self.item = item
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Event()  # set when done, or when this submitter is to lead

    def succeed(self, result: R) -> None:
        self.result = result
        self._finish()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self.wake.set()


class GroupCommit(Generic[T, R]):
    """Submit items from many threads; `write` gets lists of them, in submission order."""

    def __init__(self, max_items: int = 8) -> None:
        self.max_items = max_items
        self._mutex = threading.Lock()
        self._queued: list[_Slot[T, R]] = []
        self._leader: _Slot[T, R] | None = None

    def submit(
        self,
        item: T,
        write: Callable[[Sequence[T]], Sequence[R]],
        alone: Callable[[BaseException], bool],
    ) -> R:
        """`item`'s result from `write`, which may have written it with others.

        When `write` fails for a group, `alone(error)` decides: True (the error concerns one
        item, or cannot be told) writes each item of the group again on its own, so one bad
        item never costs the others; False (the database was busy: nothing was written)
        gives every item of the group that error."""
        slot: _Slot[T, R] = _Slot(item)
        with self._mutex:
            self._queued.append(slot)
            if self._leader is None:
                self._leader = slot
                slot.wake.set()
        slot.wake.wait()
        if not slot.done:  # this submitter leads
            self._lead(write, alone)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(
        self, write: Callable[[Sequence[T]], Sequence[R]], alone: Callable[[BaseException], bool]
    ) -> None:
        with self._mutex:
            group = self._queued[: self.max_items]
            del self._queued[: len(group)]
        try:
            _write(group, write, alone)
        finally:
            with self._mutex:
                self._leader = self._queued[0] if self._queued else None
                if self._leader is not None:
                    self._leader.wake.set()


def _write(
    group: list[_Slot[T, R]],
    write: Callable[[Sequence[T]], Sequence[R]],
    alone: Callable[[BaseException], bool],
) -> None:
    try:
        results = write([s.item for s in group])
    except BaseException as err:
        if len(group) == 1 or not alone(err):
            for s in group:
                s.fail(err)
            return
        for s in group:
            _write([s], write, alone)
        return
    for s, r in zip(group, results, strict=True):
        s.succeed(r)
