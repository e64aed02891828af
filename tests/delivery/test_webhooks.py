"""Signed webhooks against a real HTTP receiver: verification, retries, dead letter, restart."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.delivery.model import Policy
from quotameter.delivery.service import claim, deliver_due, fan_out
from quotameter.delivery.webhooks import WebhookSender, WebhookVerificationError, verify
from quotameter.notifications import repository as notices
from quotameter.store.engine import make_engine, unit_of_work
from quotameter.store.tables import deliveries
from quotameter.store.tables import notices as notices_table
from quotameter.timeutil import to_us

SECRET = "whsec_" + base64.b64encode(b"quotameter-test-secret-32-bytes!").decode()
POLICY = Policy(
    max_attempts=4, backoff_us=30_000_000, backoff_max_us=3_600_000_000, lease_us=300_000_000
)


def record(engine, clock, customer: str = "acme", type_: str = "usage.threshold") -> int:  # type: ignore[no-untyped-def]
    now = to_us(clock())
    with unit_of_work(engine) as conn:
        return notices.record(
            conn,
            customer=customer,
            feature="media",
            type=type_,
            percent=Decimal(90),
            period=(now - 10**9, now + 10**12),
            at_us=now,
            recipients={"email": ["ops@acme.example"], "in_app": False},
            payload={
                "plan": "basic",
                "unit": "minute",
                "usage": "450",
                "limit": "500",
                "hard_limit": "500",
            },
            recorded_us=now,
        )


def rows(engine) -> list:  # type: ignore[no-untyped-def]
    """Every delivery, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(select(deliveries).order_by(deliveries.c.id)))


def test_a_webhook_is_signed_and_verifies(engine, clock, receiver) -> None:  # type: ignore[no-untyped-def]
    notice_id = record(engine, clock)
    sender = WebhookSender([receiver.url + "/hook"], SECRET)
    assert deliver_due(engine, clock(), [sender]) == 1
    assert deliver_due(engine, clock(), [sender]) == 0
    [got] = receiver.requests
    body = verify(got.body, got.headers, SECRET, now=clock())
    assert body["type"] == "usage.threshold" and body["data"]["id"] == notice_id
    assert body["data"]["customer"] == "acme" and body["data"]["percent"] == "90"
    assert body["data"]["details"]["usage"] == "450"
    assert got.headers["webhook-id"] == f"msg_quotameter_notice_{notice_id}"
    assert got.headers["webhook-timestamp"] == str(int(clock().timestamp()))
    assert got.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        verify(got.body.replace(b"450", b"451"), got.headers, SECRET, now=clock())
    with pytest.raises(WebhookVerificationError):
        verify(
            got.body,
            got.headers,
            "whsec_" + base64.b64encode(b"another-secret").decode(),
            now=clock(),
        )
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(got.body, got.headers, SECRET, now=clock() + timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="Missing"):
        verify(got.body, {}, SECRET, now=clock())
    [row] = rows(engine)
    assert (row.status, row.attempts, row.channel, row.target) == (
        "delivered",
        1,
        "webhook",
        receiver.url + "/hook",
    )
    with engine.connect() as conn:
        assert conn.execute(select(notices_table.c.status)).scalar_one() == "dispatched"


def test_a_500_is_retried_after_the_backoff_then_delivered(engine, clock, receiver) -> None:  # type: ignore[no-untyped-def]
    record(engine, clock)
    receiver.script["/flaky"] = [500, 503]
    sender = WebhookSender([receiver.url + "/flaky"], SECRET)
    assert deliver_due(engine, clock(), [sender], policy=POLICY) == 1
    [row] = rows(engine)
    assert (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        f"HTTP 500 from {receiver.url}/flaky",
    )
    assert row.next_attempt_us == to_us(clock()) + 30_000_000
    clock.advance(seconds=29)
    assert deliver_due(engine, clock(), [sender], policy=POLICY) == 0  # not before the backoff
    clock.advance(seconds=1)
    assert deliver_due(engine, clock(), [sender], policy=POLICY) == 1  # 503
    assert rows(engine)[0].next_attempt_us == to_us(clock()) + 60_000_000  # doubled
    clock.advance(seconds=60)
    assert deliver_due(engine, clock(), [sender], policy=POLICY) == 1
    [row] = rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    clock.advance(hours=5)
    assert deliver_due(engine, clock(), [sender], policy=POLICY) == 0
    hits = receiver.at("/flaky")
    assert (
        len(hits) == 3 and len({h.headers["webhook-id"] for h in hits}) == 1
    )  # one message, three tries
    verify(hits[-1].body, hits[-1].headers, SECRET, now=clock() - timedelta(hours=5))


def test_a_failing_endpoint_ends_in_the_dead_letter_and_others_still_get_it(
    engine, clock, receiver
) -> None:  # type: ignore[no-untyped-def]
    from support import free_port

    record(engine, clock)
    receiver.always["/broken"] = 500
    nobody = f"http://127.0.0.1:{free_port()}/nobody"  # connection refused
    sender = WebhookSender(
        [receiver.url + "/ok", receiver.url + "/broken", nobody], SECRET, timeout=5
    )
    for _ in range(10):
        deliver_due(engine, clock(), [sender], policy=POLICY)
        clock.advance(hours=1)
    by_target = {r.target: r for r in rows(engine)}
    assert (by_target[receiver.url + "/ok"].status, by_target[receiver.url + "/ok"].attempts) == (
        "delivered",
        1,
    )
    broken = by_target[receiver.url + "/broken"]
    assert (broken.status, broken.attempts, broken.last_error) == (
        "dead",
        4,
        f"HTTP 500 from {receiver.url}/broken",
    )
    refused = by_target[nobody]
    assert (refused.status, refused.attempts) == ("dead", 4) and refused.last_error.startswith(
        "ConnectError"
    )
    assert len(receiver.at("/broken")) == 4 and len(receiver.at("/ok")) == 1


def test_a_restart_mid_delivery_delivers_what_was_pending(db_url, engine, clock, receiver) -> None:  # type: ignore[no-untyped-def]
    record(engine, clock)
    sender = WebhookSender([receiver.url + "/hook"], SECRET)
    # The first process fans out and claims, then dies before sending: its lease stays.
    with unit_of_work(engine) as conn:
        assert fan_out(Context(conn, CatalogCache().current(conn)), to_us(clock()), [sender]) == 1
    with unit_of_work(engine) as conn:
        assert len(claim(conn, to_us(clock()), POLICY, 10)) == 1
    second = record(engine, clock)  # recorded, never fanned out by the first process
    engine.dispose()

    restarted = make_engine(db_url)
    try:
        assert (
            deliver_due(restarted, clock(), [sender], policy=POLICY) == 1
        )  # the new notice; the leased one waits
        assert [r.headers["webhook-id"] for r in receiver.requests] == [
            f"msg_quotameter_notice_{second}"
        ]
        clock.advance(seconds=299)
        assert deliver_due(restarted, clock(), [sender], policy=POLICY) == 0
        clock.advance(seconds=1)  # the lease ran out
        assert deliver_due(restarted, clock(), [sender], policy=POLICY) == 1
        assert deliver_due(restarted, clock(), [sender], policy=POLICY) == 0
        got = rows(restarted)
    finally:
        restarted.dispose()
    assert [(r.status, r.attempts) for r in got] == [("delivered", 2), ("delivered", 1)]
    assert len(receiver.requests) == 2


def test_a_lease_that_runs_out_after_the_last_attempt_is_dead(engine, clock, receiver) -> None:  # type: ignore[no-untyped-def]
    record(engine, clock)
    sender = WebhookSender([receiver.url + "/hook"], SECRET)
    one = Policy(max_attempts=1, lease_us=60_000_000)
    with unit_of_work(engine) as conn:
        fan_out(Context(conn, CatalogCache().current(conn)), to_us(clock()), [sender])
    with unit_of_work(engine) as conn:
        claim(conn, to_us(clock()), one, 10)  # and the process died
    clock.advance(minutes=1)
    assert deliver_due(engine, clock(), [sender], policy=one) == 0
    [row] = rows(engine)
    assert (row.status, row.attempts, row.last_error) == (
        "dead",
        1,
        "lease expired after attempt 1",
    )
    assert receiver.requests == []
