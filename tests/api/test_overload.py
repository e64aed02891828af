"""Under a write load: reads never wait for the write lock, and a write that would wait longer
than QUOTAMETER_WRITE_WAIT_SECONDS is answered 503 with Retry-After, stores nothing, and
counts once when sent again (server.BoundedWrites, store/engine.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import anyio
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from quotameter.api import events as events_api
from quotameter.server import create_app
from quotameter.settings import Settings
from quotameter.store.engine import make_engine, unit_of_work
from quotameter.store.tables import events, metadata
from support import ADMIN, ADMIN_KEY, at, event

WAIT = 0.2  # QUOTAMETER_WRITE_WAIT_SECONDS of these tests' servers
HELD = 30.0  # a holder gives the lock up after this long if the test never lets it go

CATALOG = {
    "meters": {"calls": {"event_type": "api.call", "aggregation": "count"}},
    "plans": {
        "p": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 1_000_000},
                    "enforcement": "hard",
                }
            }
        }
    },
    "customers": {"c": {"plan": "p", "admins": ["ops@c.example"]}},
}


@contextmanager
def serving(db_url: str, clock: Any, write_wait: float) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url,
        scheduler=False,
        tune_gc=False,
        admin_key=ADMIN_KEY,
        write_wait_seconds=write_wait,
    )
    app = create_app(settings, clock=clock)
    with TestClient(app, headers=ADMIN) as c:
        yield c
    app.state.services.engine.dispose()


@pytest.fixture
def client(db_url: str, clock: Any) -> Iterator[TestClient]:
    with serving(db_url, clock, WAIT) as c:
        yield c


class Holder:
    """A write transaction held open in another thread until `release` (or HELD seconds):
    `timed_out` tells whether the test had to be unblocked that way."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.held, self.release = threading.Event(), threading.Event()
        self.timed_out = False
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with unit_of_work(self.engine) as conn:
            if conn.dialect.name == "postgresql":  # what every writer needs; readers do not
                names = ", ".join(t.name for t in metadata.sorted_tables)
                conn.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
            else:
                conn.execute(
                    text("DELETE FROM pending_evaluations WHERE 1 = 0")
                )  # a write: the file's lock is taken
            self.held.set()
            self.timed_out = not self.release.wait(HELD)


@contextmanager
def holding(engine: Engine) -> Iterator[Holder]:
    holder = Holder(engine)
    holder.thread.start()
    assert holder.held.wait(HELD)
    try:
        yield holder
    finally:
        holder.release.set()
        holder.thread.join()
    assert not holder.timed_out, "a request waited for the held write lock"


def _stored(client: TestClient) -> int:
    with client.app.state.services.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def _usage(client: TestClient) -> Decimal:
    return Decimal(str(client.get("/v1/customers/c/entitlements/calls").json()["usage"]))


def _refused(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"].startswith("database: ")


@pytest.fixture(params=["this process", "another process"])
def holder_engine(
    request: pytest.FixtureRequest, client: TestClient, db_url: str
) -> Iterator[Engine]:
    """The lock held by a thread of the server's process (its engine), or as by another
    process (an engine of its own: on SQLite, another in-process lock over the same file)."""
    if request.param == "this process":
        yield client.app.state.services.engine  # type: ignore[attr-defined]
        return
    other = make_engine(db_url)
    yield other
    other.dispose()


def test_reads_answer_and_writes_are_refused_while_the_write_lock_is_held(
    client: TestClient, holder_engine: Engine
) -> None:
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    first = [event("api.call", "c", at("2026-03-10T09:00:00Z"))]
    assert client.post("/v1/events", json=first).json()["accepted"] == 1
    assert (
        _usage(client) == 1
    )  # settles the batch's evaluation: the reads below have nothing to write
    batch = [event("api.call", "c", at(f"2026-03-10T10:0{i}:00Z")) for i in range(3)]
    with holding(holder_engine):
        assert client.get("/healthz").status_code == 200
        assert _usage(client) == 1
        check = client.post("/v1/customers/c/entitlements/calls/check", json={"amount": 1})
        assert check.status_code == 200 and check.json()["allowed"] is True
        assert client.get("/v1/customers/c/notifications").status_code == 200
        assert client.get("/v1/customers/c/grants").status_code == 200
        assert client.get("/v1/keys").status_code == 200
        started = time.monotonic()
        _refused(client.post("/v1/events", json=batch))
        assert time.monotonic() - started < HELD / 2  # bounded by WAIT, far from the old 30 s
        _refused(
            client.post(
                "/v1/customers/c/entitlements/calls/consume", json={"id": "k1", "amount": 5}
            )
        )
        _refused(
            client.post(
                "/v1/customers/c/grants", json={"feature": "calls", "amount": "10", "id": "g1"}
            )
        )
        _refused(client.put("/v1/catalog", json=CATALOG))
    assert _stored(client) == 1  # nothing of the refused requests
    accepted = client.post("/v1/events", json=batch).json()
    assert (accepted["accepted"], accepted["duplicates"]) == (3, 0)
    again = client.post("/v1/events", json=batch).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert _stored(client) == 4
    assert _usage(client) == 4  # each event counted once
    assert (
        client.post(
            "/v1/customers/c/entitlements/calls/consume", json={"id": "k1", "amount": 5}
        ).status_code
        == 200
    )
    assert _usage(client) == 9


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError(
            "database is locked"
        ),  # another process held SQLite's lock too long
        DBAPIError(
            "INSERT …", {}, psycopg.errors.DeadlockDetected()
        ),  # still deadlocked after the retries
        psycopg.errors.LockNotAvailable(),  # lock_timeout, raised through the driver's own cursor
        PoolTimeout("QueuePool limit reached"),
    ],
    ids=["sqlite-locked", "pg-deadlock", "pg-lock-timeout", "pool-timeout"],
)
def test_any_busy_database_error_is_a_503_not_a_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200

    def fail(*_args: Any) -> None:
        raise error

    monkeypatch.setattr(events_api, "store", fail)
    _refused(client.post("/v1/events", json=[event("api.call", "c", at("2026-03-10T09:00:00Z"))]))


def test_background_work_waits_its_turn(client: TestClient) -> None:
    """Outside a request (the scheduler, delivery, the CLI) a write unit waits for the lock
    instead of giving up after the request bound."""
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    done = threading.Event()

    def write() -> None:
        with unit_of_work(engine) as conn:
            conn.execute(text("DELETE FROM pending_evaluations WHERE 1 = 0"))
        done.set()

    with holding(engine) as holder:
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        assert not done.wait(WAIT * 5)  # longer than a request may wait: it still waits
        holder.release.set()
        assert done.wait(HELD)
    writer.join()


def test_the_document_declares_503_for_writes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path, method in [
        ("/v1/events", "post"),
        ("/v1/customers/{customer}/entitlements/{feature}/consume", "post"),
        ("/v1/customers/{customer}/grants", "post"),
        ("/v1/catalog", "put"),
    ]:
        answer = doc["paths"][path][method]["responses"]["503"]
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }


def test_a_consume_of_half_a_million_units_of_a_limited_count_meter_is_one_row(
    client: TestClient,
) -> None:
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    r = client.post(
        "/v1/customers/c/entitlements/calls/consume", json={"id": "bulk", "amount": 500_000}
    )
    assert (r.status_code, r.json()["usage"]) == (200, 500_000)
    assert _stored(client) == 1
    assert _usage(client) == 500_000


def test_catalogs_applied_at_once_each_get_their_version(db_url: str, clock: Any) -> None:
    """Each numbers its version after the last; at once, two used to take the same (a 500 on
    PostgreSQL)."""
    with serving(db_url, clock, HELD) as client:  # patient enough never to be refused here
        _apply_at_once(client)


def _apply_at_once(client: TestClient) -> None:
    assert client.put("/v1/catalog", json=CATALOG).json()["version"] == 1
    start = threading.Barrier(4)

    def apply(n: int) -> int:
        doc = {**CATALOG, "customers": {**CATALOG["customers"], f"x{n}": {"plan": "p"}}}
        start.wait()
        answer = client.put("/v1/catalog", json=doc)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["version"])

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(apply, range(4))) == [2, 3, 4, 5]


def test_the_liveness_probe_answers_while_every_worker_thread_is_busy(client: TestClient) -> None:
    """`/healthz`, and the check every request passes first, run on the event loop: requests
    that write hold worker threads (here the only one), and a probe that waited for one would
    report a busy server as dead."""
    portal = client.portal
    assert portal is not None
    release = threading.Event()

    def one_worker_thread() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1

    portal.call(one_worker_thread)
    busy = portal.start_task_soon(anyio.to_thread.run_sync, release.wait, HELD)
    try:
        started = time.monotonic()
        assert client.get("/healthz").json() == {"status": "ok"}
        assert time.monotonic() - started < HELD / 2
    finally:
        release.set()
        busy.result()
