"""What a client may make a real server hold: a raw socket against uvicorn on a free port,
started with the options `quotameter serve` uses (`support.running`), tiny limits and timeouts.

Every read has a timeout (the socket's): an answer or a close that does not come fails the
test, and nothing sleeps hoping it came.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from support import ADMIN_KEY, running

LIMIT = 100
WAIT = 10.0  # the longest any answer may take
CHECK = "/v1/customers/acme/entitlements/media/check"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    """One raw HTTP/1.1 connection: what is sent is exactly what the test writes."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: test",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.buffer += data
        return data

    def head(self) -> bytes:
        """The next status line and headers."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"the connection closed before an answer: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def answer(self) -> Answer:
        lines = self.head().decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._more(), "the connection closed in the middle of an answer"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(status, headers, orjson.loads(body) if body else None)

    def closed(self) -> bool:
        """Whether the server closes the connection (within WAIT) with nothing more to say."""
        try:
            return self._more() == b"" and self.buffer == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["httptools", "h11"])
def protocol(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both of uvicorn's HTTP/1.1 implementations: `serve` takes httptools when it is installed."""
    from quotameter import serving

    if request.param == "h11":
        monkeypatch.setattr(serving, "AUTO", serving.H11WithHeaderDeadline)
    else:
        assert serving.AUTO.__name__ == "HttpToolsWithHeaderDeadline"
    return str(request.param)


@pytest.fixture
def server(tmp_path: Path, clock, protocol: str) -> Iterator[tuple[Any, str]]:  # type: ignore[no-untyped-def]
    with running(
        f"sqlite:///{tmp_path / 'http.sqlite3'}",
        clock,
        max_body_bytes=LIMIT,
        body_timeout_seconds=0.2,
        header_timeout_seconds=0.2,
    ) as (app, _server, url):
        yield app, url


@pytest.fixture
def client(server: tuple[Any, str]) -> Iterator[Client]:
    c = Client(server[1])
    yield c
    c.close()


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@contextmanager
def quotameter_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture quotameter's records from INFO up, also when an earlier test in this process
    configured logging (`logs.config`) so that they do not propagate to the root logger."""
    logger = logging.getLogger("quotameter")
    attached = not logger.propagate
    if attached:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="quotameter")
    try:
        yield
    finally:
        if attached:
            logger.removeHandler(caplog.handler)


JSON = {"Content-Type": "application/json"}


def test_a_request_without_a_key_is_answered_401_before_its_body_is_read(client: Client) -> None:
    # 400 MB announced, not one byte sent: the answer must come without waiting for them.
    client.request(
        "POST",
        "/v1/customers/x/entitlements/y/check",
        {**JSON, "Content-Length": "400000000", "Expect": "100-continue"},
    )
    got = client.answer()
    assert (got.status, got.body) == (
        401,
        {"error": "authorization: missing; send 'Authorization: Bearer <key>'"},
    )
    assert got.headers["www-authenticate"] == "Bearer" and got.headers["connection"] == "close"
    assert client.closed()


def test_a_length_over_the_limit_is_refused_without_reading_and_without_100_continue(
    client: Client, server: tuple[Any, str]
) -> None:
    client.request(
        "POST", CHECK, {**ADMIN, **JSON, "Content-Length": str(LIMIT + 1), "Expect": "100-continue"}
    )
    got = client.answer()  # the first thing the server says: no "100 Continue" before it
    assert (got.status, got.body) == (
        413,
        {"error": f"body: {LIMIT + 1} bytes is over the limit of {LIMIT} bytes"},
    )
    assert got.headers["connection"] == "close" and client.closed()
    # Within the limit, the client is told to go on once the body is wanted, and it is read.
    within = Client(server[1])
    body = b'{"amount": 1}'
    within.request(
        "POST", CHECK, {**ADMIN, **JSON, "Content-Length": str(len(body)), "Expect": "100-continue"}
    )
    assert within.head() == b"HTTP/1.1 100 Continue"
    within.send(body)
    got = within.answer()
    assert got.status == 404 and got.body == {
        "error": "customer: unknown customer 'acme'"
    }  # read and understood
    within.close()


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(client: Client) -> None:
    client.request("POST", "/v1/events", {**ADMIN, **JSON, "Transfer-Encoding": "chunked"})
    client.send(b"3c\r\n" + b" " * 60 + b"\r\n")
    client.send(b"3c\r\n" + b" " * 60 + b"\r\n")  # 120 bytes, and no end in sight
    got = client.answer()
    assert (got.status, got.body) == (413, {"error": f"body: over the limit of {LIMIT} bytes"})
    assert got.headers["connection"] == "close" and client.closed()


def test_a_body_that_stops_coming_is_answered_408_and_its_connection_closed(client: Client) -> None:
    client.request("POST", CHECK, {**ADMIN, **JSON, "Content-Length": "50"}, b'{"amount": ')
    got = client.answer()  # after the body timeout (0.2 s)
    assert (got.status, got.body) == (
        408,
        {"error": "body: nothing arrived for 0.2 s after 11 bytes; send the body without pausing"},
    )
    assert got.headers["connection"] == "close" and client.closed()


def test_headers_that_do_not_arrive_in_time_close_the_connection(
    server: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    _app, url = server
    with quotameter_log(caplog):
        silent = Client(url)  # connects and says nothing
        slow = Client(url)
        slow.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
        assert silent.closed() and slow.closed()
        # A connection kept alive gets the same time for the headers of its next request.
        again = Client(url)
        again.request("GET", "/healthz", {})
        assert again.answer().status == 200
        again.send(b"GET /healthz HTTP/1.1\r\n")
        assert again.closed()
    for c in (silent, slow, again):
        c.close()
    late = [
        r
        for r in caplog.records
        if "request headers were not complete within 0.2 s" in r.getMessage()
    ]
    assert len(late) == 2 and all(
        r.levelno == logging.INFO for r in late
    )  # the silent one is closed quietly


def test_a_long_answer_is_not_cut_by_the_header_timeout(
    tmp_path: Path, clock, protocol: str
) -> None:  # type: ignore[no-untyped-def]
    from support import MIC_ON, mic_left_on

    clock.now = MIC_ON
    with running(
        f"sqlite:///{tmp_path / 'long.sqlite3'}",
        clock,
        header_timeout_seconds=0.1,
        inapp_heartbeat_seconds=0.05,
    ) as (_app, _server, url):
        key = mic_left_on(url)
        stream = Client(url)
        stream.request(
            "GET", "/v1/customers/acme/notifications/stream", {"Authorization": f"Bearer {key}"}
        )
        assert stream.head().startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        # Past three header timeouts, on the stream's own keep-alives.
        while time.monotonic() - started < 0.3 or stream.buffer.count(b": keep-alive") < 3:
            assert stream._more(), "the stream was cut"
        stream.close()


def test_a_client_that_leaves_in_the_middle_of_its_body_is_one_line_in_the_log(
    server: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    _app, url = server
    with quotameter_log(caplog):
        for path, half in (("/v1/events", b'[{"id": "e1", "sour'), (CHECK, b'{"amount": ')):
            c = Client(url)
            c.request("POST", path, {**ADMIN, **JSON, "Content-Length": "40"}, half)
            c.close()
        deadline = time.monotonic() + WAIT
        pause = threading.Event()
        while (
            len([r for r in caplog.records if "client left" in r.getMessage()]) < 2
        ):  # the server's own pace
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            pause.wait(0.01)
    left = [r for r in caplog.records if "client left" in r.getMessage()]
    # How much was received depends on whether the app had asked for it before the client left.
    said = sorted(re.sub(r"\d+ received", "N received", r.getMessage()) for r in left)
    assert said == [
        f"client left before the end of its body: POST {CHECK} (40 bytes announced, N received)",
        "client left before the end of its body: POST /v1/events (40 bytes announced, N received)",
    ]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in left)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # no error, no trace
