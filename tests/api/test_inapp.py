"""The in-app stream: a real server in a thread, a client reading server-sent events.

Every read has a timeout (the client's): a notice that does not come fails the test, and
nothing sleeps hoping it came.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from support import (
    ADMIN,
    ADMIN_KEY,
    MIC_ON,
    buy_media_block,
    mic_left_on,
    minutes,
    running,
)

T0 = MIC_ON
PATH = "/v1/customers/acme/notifications/stream"
READ_TIMEOUT = 10.0


class Events:
    """The events of one open stream, read one at a time (comments come as {"comment": …})."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for line in self.lines:
            if line == "":
                if fields:
                    return fields
            elif line.startswith(":"):
                if not fields:
                    return {"comment": line}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                if name == "data":
                    fields["data"] = orjson.loads(fields["data"])
        raise AssertionError("the stream ended")

    def until(self, kind: str) -> dict[str, Any]:
        """The next event of this type; in-app streams send no other notice types."""
        while True:
            got = self.next()
            if got.get("event") == kind:
                return got
            assert got.get("event") in (None, "state") or "comment" in got, got


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def listing(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/customers/acme/notifications", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["notifications"]  # type: ignore[no-any-return]


def same_notice(listed: dict[str, Any], sent: dict[str, Any]) -> bool:
    """The event carries the notice as the listing shows it, as it was when sent: its
    delivery state (status, deliveries) may have moved on since."""
    moving = {"status", "deliveries"}
    return {k: v for k, v in listed.items() if k not in moving} == {
        k: v for k, v in sent.items() if k not in moving
    }


def open_stream(client: httpx.Client, key: str, **extra: Any):  # type: ignore[no-untyped-def]
    headers = {**bearer(key), **extra.pop("headers", {})}
    return client.stream("GET", PATH, headers=headers, params=extra or None)


def test_a_client_learns_at_once_that_media_is_blocked_then_restored(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.notifications.scheduler import tick

    clock.now = T0
    # A poll far longer than the read timeout: only this process's wake-up can deliver in time.
    with running(db_url, clock, inapp_poll_seconds=60) as (app, _server, url):
        key = mic_left_on(url)
        svc = app.state.services
        with (
            httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client,
            open_stream(client, key) as response,
        ):
            events = Events(response)
            state = events.next()
            assert state["event"] == "state" and "id" not in state
            assert state["data"]["features"] == {"media": {"has_access": True}}
            # Time alone crosses the 500-minute limit at 17:19; the scheduler's pass records it.
            clock.now = T0 + minutes(600)
            assert tick(svc.engine, svc.catalogs, clock) >= 1
            blocked = events.next()  # the thresholds before it are not addressed in-app
            assert blocked["event"] == "access.blocked"
            notice = blocked["data"]
            assert (notice["type"], notice["feature"], notice["at"]) == (
                "access.blocked",
                "media",
                "2026-03-10T17:19:00.000001Z",
            )
            assert notice["recipients"]["in_app"] is True and int(blocked["id"]) == notice["id"]
            buy_media_block(url)
            restored = events.next()
            assert restored["event"] == "access.restored" and int(restored["id"]) > int(
                blocked["id"]
            )
        shown = {n["id"]: n for n in listing(url)}
        assert same_notice(shown[notice["id"]], notice)
        assert same_notice(shown[restored["data"]["id"]], restored["data"])


def test_last_event_id_resumes_without_loss_and_all_sends_every_type(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.notifications.scheduler import tick

    clock.now = T0
    with running(db_url, clock) as (app, _server, url):
        key = mic_left_on(url)
        svc = app.state.services
        with httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client:
            with open_stream(client, key) as response:
                events = Events(response)
                assert events.next()["event"] == "state"
                clock.now = T0 + minutes(600)
                tick(svc.engine, svc.catalogs, clock)
                blocked = events.until("access.blocked")
            buy_media_block(url)  # while the client is away
            with open_stream(client, key, headers={"Last-Event-ID": blocked["id"]}) as response:
                events = Events(response)
                state = events.next()
                assert (
                    state["event"] == "state"
                    and state["data"]["features"]["media"]["has_access"] is True
                )
                assert events.next()["event"] == "access.restored"
            # Every type, from the first, sent at once and then closed (max_seconds=0).
            with open_stream(client, key, after=0, max_seconds=0, all="true") as response:
                events = Events(response)
                assert events.next()["event"] == "state"
                got = []
                with pytest.raises(AssertionError, match="the stream ended"):
                    while True:
                        got.append(events.next())
        everything = listing(url)
        assert [(int(e["id"]), e["event"]) for e in got] == [
            (n["id"], n["type"]) for n in everything
        ]
        assert all(same_notice(n, e["data"]) for n, e in zip(everything, got, strict=True))
        assert [n["type"] for n in everything] == [
            "usage.threshold",
            "usage.threshold",
            "usage.threshold",
            "usage.exhausted",
            "access.blocked",
            "topup.applied",
            "access.restored",
        ]


def test_notices_recorded_by_another_process_arrive_by_polling(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.catalog.service import CatalogCache
    from quotameter.notifications.scheduler import tick
    from quotameter.store.engine import make_engine

    clock.now = T0
    with running(db_url, clock, inapp_poll_seconds=0.05) as (_app, _server, url):
        key = mic_left_on(url)
        elsewhere = make_engine(db_url)  # another process's engine: no wake-up reaches the stream
        try:
            with (
                httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client,
                open_stream(client, key) as response,
            ):
                events = Events(response)
                assert events.next()["event"] == "state"
                clock.now = T0 + minutes(600)
                tick(elsewhere, CatalogCache(), clock)
                assert events.until("access.blocked")["data"]["feature"] == "media"
        finally:
            elsewhere.dispose()


def test_keep_alive_comments_and_streams_end_when_the_server_stops(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = T0
    with running(db_url, clock, inapp_heartbeat_seconds=0.05) as (_app, server, url):
        key = mic_left_on(url)
        client = httpx.Client(base_url=url, timeout=READ_TIMEOUT)
        with client, open_stream(client, key) as response:
            events = Events(response)
            assert events.next()["event"] == "state"
            assert events.next() == {"comment": ": keep-alive"}
            server.should_exit = (
                True  # with the stream still open: it must end, not hold the server
            )
            deadline = time.monotonic() + READ_TIMEOUT
            with pytest.raises(AssertionError, match="the stream ended"):
                while True:  # keep-alive comments until it ends
                    assert time.monotonic() < deadline, "the stream outlived the server"
                    assert "comment" in events.next()


def test_the_stream_needs_the_customers_own_key_or_an_admin_key(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = T0
    with running(db_url, clock) as (_app, _server, url):
        mic_left_on(url)
        with httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client:
            studio = client.post(
                "/v1/keys", headers=ADMIN, json={"role": "customer", "customer": "studio"}
            ).json()
            r = client.get(PATH, headers=bearer(studio["key"]))
            assert (r.status_code, r.json()["error"]) == (
                403,
                "customer: this key reads customer 'studio' only",
            )
            r = client.get(PATH)
            assert r.status_code == 401 and r.json()["error"].startswith("authorization: ")
            r = client.get("/v1/customers/nobody/notifications/stream", headers=ADMIN)
            assert (r.status_code, r.json()["error"]) == (
                404,
                "customer: unknown customer 'nobody'",
            )
            r = client.get(PATH, headers={**ADMIN, "Last-Event-ID": "yesterday"})
            assert r.status_code == 422 and r.json()["error"].startswith("Last-Event-ID: ")
            with open_stream(
                client, ADMIN_KEY, max_seconds=0
            ) as response:  # an admin reads any customer
                assert Events(response).next()["event"] == "state"


def test_a_client_that_leaves_is_forgotten_and_the_poll_stops_with_the_last_stream(
    db_url: str, clock
) -> None:  # type: ignore[no-untyped-def]
    clock.now = T0
    with running(db_url, clock, inapp_poll_seconds=0.05) as (app, _server, url):
        key = mic_left_on(url)
        with (
            httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client,
            open_stream(client, key) as response,
        ):
            events = Events(response)  # kept: dropping its line iterator would close the connection
            assert events.next()["event"] == "state"
            hub = app.state.inapp_hub
            assert hub._waiting.keys() == {"acme"} and hub._poller is not None
        deadline = time.monotonic() + READ_TIMEOUT
        pause = threading.Event()
        while (
            hub._waiting or hub._poller is not None
        ):  # the server notices the disconnect on its own
            assert time.monotonic() < deadline, "the stream or its poll outlived its client"
            pause.wait(0.01)


def test_the_streams_of_a_revoked_key_end_within_the_key_cache_interval(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.keys import service as keys
    from quotameter.notifications.scheduler import tick
    from quotameter.store.engine import make_engine, unit_of_work
    from quotameter.timeutil import to_us

    clock.now = T0
    # The key cache's interval made small, the poll for notices long: only the key check can end it.
    with running(db_url, clock, key_cache_seconds=0.05, inapp_poll_seconds=60) as (
        app,
        _server,
        url,
    ):
        key = mic_left_on(url)
        listed = httpx.get(f"{url}/v1/keys", headers=ADMIN).json()["keys"]
        key_id = next(k["id"] for k in listed if k["role"] == "customer")
        elsewhere = make_engine(
            db_url
        )  # another process revokes the key: nothing in this one is told
        try:
            with (
                httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client,
                open_stream(client, key) as revoked,
                open_stream(client, ADMIN_KEY) as kept,
            ):
                revoked_events, kept_events = Events(revoked), Events(kept)
                assert (
                    revoked_events.next()["event"] == "state"
                    and kept_events.next()["event"] == "state"
                )
                with unit_of_work(elsewhere) as conn:
                    keys.revoke(conn, key_id, to_us(clock()))
                with pytest.raises(AssertionError, match="the stream ended"):
                    revoked_events.next()
                # The other key's stream goes on, and the revoked key cannot open a new one.
                svc = app.state.services
                clock.now = T0 + minutes(600)
                tick(svc.engine, svc.catalogs, clock)
                assert kept_events.until("access.blocked")["data"]["feature"] == "media"
                r = client.get(PATH, headers=bearer(key))
                assert (r.status_code, r.json()["error"]) == (
                    401,
                    "authorization: unknown or revoked key",
                )
        finally:
            elsewhere.dispose()


def test_a_stream_ends_after_its_maximum_lifetime(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = T0
    with running(db_url, clock, inapp_max_stream_seconds=0.2) as (_app, _server, url):
        key = mic_left_on(url)
        with (
            httpx.Client(base_url=url, timeout=READ_TIMEOUT) as client,
            open_stream(client, key) as response,
        ):
            events = Events(response)
            assert events.next()["event"] == "state"
            with pytest.raises(
                AssertionError, match="the stream ended"
            ):  # on its own wake-up, after 0.2 s
                events.next()
