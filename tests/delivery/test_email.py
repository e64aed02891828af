"""E-mails of the reference policies, received by a real SMTP server, each exactly once."""

from __future__ import annotations

import pytest

from quotameter.delivery.emails import EmailSender
from quotameter.delivery.service import deliver_due
from quotameter.notifications.scheduler import tick
from support import at, demo_catalog, event, minutes, stream

T0 = at("2026-03-10T09:00:00Z")


def catalog() -> dict:
    doc = demo_catalog()
    doc["customers"]["acme"]["members"] = ["ann@acme.example", "bob@acme.example"]
    doc["customers"]["studio"]["timezone"] = (
        "America/New_York"  # e-mails write instants in the customer's zone
    )
    # The session policy of the reference (10 % and 1 % left, exhausted, owner, auto-upgrade)
    # on a quota of 100 instead of 100,000, so the test posts 100 events, not 100,000.
    doc["plans"]["sessions_100k"]["entitlements"]["sessions"]["allowance"] = {"fixed": 100}
    doc["plans"]["sessions_200k"]["entitlements"]["sessions"]["allowance"] = {"fixed": 200}
    return doc


@pytest.fixture
def demo(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=catalog()).status_code == 200
    return client


@pytest.fixture
def deliver(demo, smtp, clock):  # type: ignore[no-untyped-def]
    """Evaluate what was posted, then run a delivery pass; the mails received so far."""
    inbox, port = smtp
    services = demo.app.state.services
    sender = EmailSender("127.0.0.1", port, tls="none", sender="quotameter@example.com")

    def run() -> list:
        tick(services.engine, services.catalogs, clock)
        deliver_due(services.engine, clock(), [sender], catalogs=services.catalogs)
        return list(inbox.mails)

    return run


def post(client, events) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text


def media(client, user: str, start, end) -> None:  # type: ignore[no-untyped-def]
    post(
        client,
        stream("media.activity", "acme", start, end, user=user, stream=f"{user}/mic", kind="mic"),
    )


def test_pooled_media_tells_the_admins_at_85_90_95_and_every_member_of_the_block(
    demo, deliver
) -> None:  # type: ignore[no-untyped-def]
    demo.patch(
        "/v1/customers/acme", json={"seats": 1, "effective_at": "2026-03-01T00:00:00Z"}
    )  # 500 minutes
    media(demo, "u1", T0 - minutes(430), T0)  # 430 / 500 = 86 %
    mails = deliver()
    assert [m.subject for m in mails] == ["acme: 85 % of your media allowance used (15 % left)"]
    first = mails[0]
    assert first.rcpt == ["ops@acme.example"] and first.message["To"] == "ops@acme.example"
    text, html = first.part("plain"), first.part("html")
    for words in (
        "acme has used 430 of 500 minutes of media this period, past the 85 % mark.",
        "Percent used:  86 %",
        "Remaining:     70 minutes",
        "Period ends:   2026-04-01 00:00 UTC",
        "Buy a block of 1,000 minutes for 5.00 USD from the billing menu: it is added at once.",
        "Or wait: the allowance resets on 2026-04-01 00:00 UTC.",
    ):
        assert words in text, text
    assert (
        "<li>Buy a block of 1,000 minutes for 5.00 USD" in html and "<th" in html and "86 %" in html
    )
    assert deliver() == mails  # a second pass sends nothing again

    media(demo, "u2", T0 - minutes(20), T0)  # 450: 90 %
    media(demo, "u3", T0 - minutes(25), T0)  # 475: 95 %
    mails = deliver()
    assert [m.subject for m in mails][1:] == [
        "acme: 90 % of your media allowance used (10 % left)",
        "acme: 95 % of your media allowance used (5 % left)",
    ]
    assert all(m.rcpt == ["ops@acme.example"] for m in mails)

    media(demo, "u4", T0 - minutes(25), T0)  # 500: used up and blocked
    mails = deliver()
    assert [(m.subject, m.rcpt) for m in mails][3:] == [
        ("acme: your media allowance is used up", ["ops@acme.example"]),
        ("acme: media is blocked", ["ops@acme.example", "ann@acme.example", "bob@acme.example"]),
    ]
    assert "disabled for every member" in mails[4].part("plain")
    assert len(deliver()) == 5
    thresholds = [m.subject for m in deliver() if "% of your media" in m.subject]
    assert len(thresholds) == len(set(thresholds)) == 3  # 85, 90, 95: each exactly once


def test_volume_tells_the_owner_at_90_percent_once(demo, deliver, clock) -> None:  # type: ignore[no-untyped-def]
    post(demo, [event("media.volume", "studio", T0, hours_delta=20)])
    assert deliver() == []
    post(
        demo, [event("media.volume", "studio", T0 + minutes(1), hours_delta=3)]
    )  # 23 of 25 h: 92 %
    post(demo, [event("media.volume", "studio", T0 + minutes(2), hours_delta=-5)])
    post(
        demo, [event("media.volume", "studio", T0 + minutes(3), hours_delta=5)]
    )  # back to 23: no second mail
    mails = deliver()
    assert deliver() == mails
    assert [(m.subject, m.rcpt) for m in mails] == [
        ("studio: 90 % of your managed_media allowance used (10 % left)", ["owner@studio.example"])
    ]
    text = mails[0].part("plain")
    assert "studio has used 23 of 25 hours of managed_media this period" in text
    assert "Use beyond the limit is billed at 20.00 USD per hour." in text
    # the billing cycle from the 15th, at midnight in New York (04:00 UTC: daylight saving
    # time began on 8 March)
    assert "the allowance resets on 2026-03-15 00:00 America/New_York" in text
    [notice] = demo.get("/v1/customers/studio/notifications").json()["notifications"]
    assert notice["status"] == "dispatched"
    assert notice["deliveries"] == [{"channel": "email", "status": "delivered", "attempts": 1}]


def test_sessions_tell_the_owner_at_10_and_1_percent_left_then_exhausted(demo, deliver) -> None:  # type: ignore[no-untyped-def]
    def sessions(n: int) -> None:
        post(demo, [event("session.created", "docs", T0) for _ in range(n)])

    sessions(89)
    assert deliver() == []
    sessions(1)  # 90: 10 % left
    sessions(1)
    assert [m.subject for m in deliver()] == [
        "docs: 90 % of your sessions allowance used (10 % left)"
    ]
    sessions(8)  # 99: 1 % left
    deliver()
    sessions(1)  # 100: exhausted, and auto-upgrade moves it to sessions_200k
    mails = deliver()
    assert deliver() == mails
    assert [m.subject for m in mails] == [
        "docs: 90 % of your sessions allowance used (10 % left)",
        "docs: 99 % of your sessions allowance used (1 % left)",
        "docs: your sessions allowance is used up",
        "docs: upgrading from sessions_100k to sessions_200k",
        "docs: upgraded to sessions_200k",
    ]
    assert all(m.rcpt == ["cto@docs.example"] for m in mails)
    assert "Upgrade to the sessions_200k plan (200 sessions)." in mails[0].part("plain")
    assert "the new sessions limit is 200 sessions" in mails[4].part("plain")
