"""Helpers for tests: the demo catalog, and events built by name."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import yaml

from quotameter.context import Context

_ids = itertools.count(1)

# The admin key every test app and test server is started with (QUOTAMETER_ADMIN_KEY).
ADMIN_KEY = "qm_test_admin_key_for_the_suite_only"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@contextmanager
def statements(engine: Any) -> Iterator[list[str]]:
    """The SQL statements the driver runs on `engine` inside the block, in order (a
    transaction's BEGIN, which SQLite's connections send themselves, left out)."""
    from sqlalchemy import event

    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement != "BEGIN":
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def demo_catalog(**extra_customers: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    doc["customers"].update(extra_customers)
    for cust in doc["customers"].values():
        if "billing_anchor" in cust:
            cust["billing_anchor"] = str(cust["billing_anchor"])
    return doc


def fresh_catalog(engine: Any, catalog: dict[str, Any]) -> None:
    """Empty every table (the schema stays) and apply `catalog` as the first catalog."""
    from sqlalchemy import delete

    from quotameter.catalog import service as catalogs
    from quotameter.store.engine import unit_of_work
    from quotameter.store.tables import metadata
    from quotameter.usecases.catalog import apply as apply_catalog

    with unit_of_work(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "alembic_version":
                conn.execute(delete(table))
        apply_catalog(conn, catalog, catalogs.EMPTY, 0)


def ingest_batches(engine: Any, loaded: Any, batches: Sequence[list[dict[str, Any]]]) -> None:
    """Ingest each batch in its own transaction (received at 0); none of their events may be
    refused."""
    from quotameter.store.engine import unit_of_work
    from quotameter.usecases.record import ingest

    for batch in batches:
        with unit_of_work(engine) as conn:
            assert ingest(Context(conn, loaded), batch, received_us=0).rejected == []


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event(
    type_: str, subject: str, time: datetime | str | None, source: str = "test", **data: Any
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"e{next(_ids)}",
        "source": source,
        "type": type_,
        "subject": subject,
        "data": data,
    }
    if time is not None:
        ev["time"] = time if isinstance(time, str) else iso(time)
    return ev


def stream(
    type_: str, subject: str, start: datetime, end: datetime | None, **data: Any
) -> list[dict[str, Any]]:
    """A start event, and a stop event when `end` is given."""
    out = [event(type_, subject, start, action="start", **data)]
    if end is not None:
        out.append(event(type_, subject, end, action="stop", **data))
    return out


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`quotameter serve` in its own process; `url` once it said it is up."""

    def __init__(self, database_url: str | None, cwd: str, *args: str, **env: str) -> None:
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "QUOTAMETER_PORT": str(self.port),
            "QUOTAMETER_SCHEDULER": "false",
            "QUOTAMETER_ADMIN_KEY": ADMIN_KEY,
            **env,
        }
        environ.pop("QUOTAMETER_DATABASE_URL", None)
        if database_url:
            environ["QUOTAMETER_DATABASE_URL"] = database_url
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quotameter.cli", "serve", *args],
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []

    def wait_ready(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the process's own words; no sleeping
            self.output.append(line)
            if "Application startup complete" in line:
                return "".join(self.output)
        raise AssertionError("server exited before it was ready:\n" + "".join(self.output))

    def wait_listening(self) -> None:
        """Until the port accepts connections. With `--workers`, the parent binds the socket and
        each worker listens on it once its application started, and says nothing then."""
        import socket
        import time

        self.wait_ready()
        deadline, pause = time.monotonic() + 30, threading.Event()
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                return
            except ConnectionRefusedError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "".join(
                    self.output
                )
                pause.wait(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@contextmanager
def running(db_url: str, clock: Any, **settings: Any) -> Iterator[tuple[Any, Any, str]]:
    """The app served by uvicorn in a thread on a free port: (app, server, base url)."""
    import uvicorn

    from quotameter.server import create_app
    from quotameter.serving import uvicorn_options
    from quotameter.settings import Settings

    config = Settings(
        database_url=db_url,
        scheduler=False,
        tune_gc=False,
        admin_key=ADMIN_KEY,
        host="127.0.0.1",
        port=free_port(),
        **settings,
    )
    app = create_app(config, clock=clock)
    port = config.port
    # The options `quotameter serve` gives uvicorn (the header timeout's protocol among them).
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config), log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started:  # set by the server itself once it listens
        assert thread.is_alive(), "the server exited before it was ready"
        ready.wait(0.01)
    try:
        yield app, server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop"
        app.state.services.engine.dispose()


@dataclass
class AsgiAnswer:
    status: int
    headers: dict[str, str]
    body: Any  # the JSON answer
    reads: int  # how many times the application asked for the request body


def asgi_call(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Sequence[bytes] = (b"",),
    more: bool = False,
) -> AsgiAnswer:
    """One request straight through the ASGI application, without a server: each `receive`
    hands it the next of `chunks`, the body; with `more`, the client has more to send after
    them, and leaves instead."""
    import asyncio

    import orjson

    pieces = list(chunks)
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads <= len(pieces):
            return {
                "type": "http.request",
                "body": pieces[reads - 1],
                "more_body": more or reads < len(pieces),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [
        (b"host", b"test"),
        (b"content-type", b"application/json"),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return AsgiAnswer(
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        orjson.loads(body),
        reads,
    )


# --- acme's microphone, open since 09:00 on one seat: the in-app tests (api and browser) ---

MIC_ON = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def mic_left_on(url: str) -> str:
    """The demo catalog, acme on one seat (500 minutes, hard limit), its microphone on since
    MIC_ON and never off; acme's own key."""
    import httpx

    with httpx.Client(base_url=url, headers=ADMIN) as admin:
        assert admin.put("/v1/catalog", json=demo_catalog()).status_code == 200
        r = admin.patch(
            "/v1/customers/acme", json={"seats": 1, "effective_at": "2026-03-01T00:00:00Z"}
        )
        assert r.status_code == 200, r.text
        r = admin.post(
            "/v1/events",
            json=stream(
                "media.activity", "acme", MIC_ON, None, user="u1", stream="u1/mic", kind="mic"
            ),
        )
        assert r.json()["rejected"] == [], r.text
        made = admin.post("/v1/keys", json={"role": "customer", "customer": "acme"})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])


def buy_media_block(url: str) -> None:
    import httpx

    r = httpx.post(
        f"{url}/v1/customers/acme/topups",
        headers=ADMIN,
        json={"feature": "media", "blocks": 1, "id": "t-1"},
    )
    assert r.status_code == 201, r.text


# --- the console on the demo's data (fixtures in tests/browser/conftest.py) ----------------

DEMO_NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # the README's pinned demo run


@dataclass
class DemoConsole:
    url: str  # the served console and API
    app: Any
    clock: Any  # the server's clock (a tests' Clock, pinned at DEMO_NOW)
    admin_key: str
    keys: dict[str, str]  # customer -> a customer key of it, for every demo organization


def sign_in_page(page: Any, url: str, key: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/console/**")
