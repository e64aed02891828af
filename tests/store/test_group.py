"""Group commit: queued items are written together, each submitter gets its own result."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from quotameter.store.group import GroupCommit


class Busy(Exception):
    pass


class Notifying:
    """A lock that tells `changed` each time it is released (the queue may have changed)."""

    def __init__(self, lock: threading.Lock, changed: threading.Condition) -> None:
        self.lock, self.changed = lock, changed

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *_: object) -> None:
        self.lock.release()
        with self.changed:
            self.changed.notify_all()


def run(submitters: list[str], write, alone=lambda err: True):  # type: ignore[no-untyped-def]
    """Submit each item from its own thread, all at once; item -> result or error."""
    group: GroupCommit[str, str] = GroupCommit(max_items=8)
    out: dict[str, object] = {}
    start = threading.Barrier(len(submitters))

    def submit(item: str) -> None:
        start.wait()
        try:
            out[item] = group.submit(item, write, alone)
        except Exception as err:
            out[item] = err

    threads = [threading.Thread(target=submit, args=(i,)) for i in submitters]
    for t in threads:
        t.start()
    return threads, out


def test_items_queued_behind_a_write_are_written_together_in_order_and_answered_each() -> None:
    first_started, release = threading.Event(), threading.Event()
    groups: list[list[str]] = []

    def write(items: Sequence[str]) -> list[str]:
        groups.append(list(items))
        if len(groups) == 1:  # hold the first write until the others have queued
            first_started.set()
            release.wait()
        return [f"stored {i}" for i in items]

    group: GroupCommit[str, str] = GroupCommit(max_items=8)
    queued = threading.Condition()
    group._mutex = Notifying(group._mutex, queued)  # type: ignore[assignment]
    out: dict[str, str] = {}
    lead = threading.Thread(
        target=lambda: out.__setitem__("a", group.submit("a", write, lambda e: True))
    )
    lead.start()
    first_started.wait()
    others = [
        threading.Thread(
            target=lambda i=i: out.__setitem__(i, group.submit(i, write, lambda e: True))
        )
        for i in "bcd"
    ]
    for t in others:
        t.start()
    with queued:  # until all three are queued behind the first write
        queued.wait_for(lambda: len(group._queued) == 3)
    release.set()
    for t in [lead, *others]:
        t.join()
    assert groups[0] == ["a"]
    assert sorted(groups[1]) == ["b", "c", "d"] and len(groups) == 2
    assert out == {i: f"stored {i}" for i in "abcd"}


def test_one_bad_item_never_costs_the_others_of_its_group() -> None:
    def write(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("bad item")
        return [i.upper() for i in items]

    threads, out = run(["x", "bad", "y", "z"], write)
    for t in threads:
        t.join()
    assert {k: v for k, v in out.items() if k != "bad"} == {"x": "X", "y": "Y", "z": "Z"}
    assert isinstance(out["bad"], ValueError)


def test_a_busy_database_answers_every_item_of_the_group_at_once_without_trying_each_again() -> (
    None
):
    calls: list[list[str]] = []

    def write(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        raise Busy

    threads, out = run(["p", "q", "r"], write, alone=lambda err: not isinstance(err, Busy))
    for t in threads:
        t.join()
    assert all(isinstance(v, Busy) for v in out.values()) and len(out) == 3
    assert sum(map(len, calls)) == 3  # each item was in exactly one write: none tried again alone


def test_a_group_holds_at_most_max_items() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def write(items: Sequence[str]) -> list[str]:
        sizes.append(len(items))
        gate.wait()
        return list(items)

    group: GroupCommit[str, str] = GroupCommit(max_items=2)
    threads = [
        threading.Thread(target=group.submit, args=(str(i), write, lambda e: True))
        for i in range(7)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert sum(sizes) == 7 and max(sizes) <= 2


@pytest.mark.parametrize("n", [1, 16])
def test_every_submitter_gets_its_own_result(n: int) -> None:
    threads, out = run([f"i{k}" for k in range(n)], lambda items: [f"{i}!" for i in items])
    for t in threads:
        t.join()
    assert out == {f"i{k}": f"i{k}!" for k in range(n)}
