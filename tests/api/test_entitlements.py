"""Allowances that enforce: balances, checks, consumption, grants, plans over time, notices."""

from __future__ import annotations

from decimal import Decimal

import pytest

from support import at, demo_catalog, event, iso, minutes, stream

T0 = at("2026-03-10T09:00:00Z")

LADDER = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count"},
        "bytes": {"event_type": "upload", "aggregation": "sum", "value_property": "bytes"},
        "volume": {"event_type": "volume", "aggregation": "gauge", "delta_property": "d"},
    },
    "plans": {
        "small": {
            "next_plan": "big",
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 10},
                    "enforcement": "hard",
                    "notify": {
                        "percent_used": [50, 80],
                        "percent_remaining": [10],
                        "exhausted": True,
                        "recipients": "owner",
                    },
                },
                "soft": {
                    "meter": "bytes",
                    "allowance": {"fixed": 100},
                    "enforcement": "soft",
                    "slack": 0.05,
                },
                "over": {
                    "meter": "volume",
                    "allowance": {"fixed": 25},
                    "enforcement": "overage",
                    "overage_limit": 15,
                },
                "free": {"meter": "bytes", "enforcement": "none"},
            },
        },
        "big": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 20},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50, 80], "exhausted": True, "recipients": "owner"},
                },
            }
        },
    },
    "customers": {
        "a": {
            "plan": "small",
            "owner": "boss@a.example",
            "members": ["m1@a.example", "m2@a.example"],
        },
        "up": {"plan": "small", "owner": "boss@up.example", "auto_upgrade": True},
    },
}


def num(value) -> Decimal:  # type: ignore[no-untyped-def]
    return None if value is None else Decimal(str(value))


def get(client, customer, feature, when=None) -> dict:  # type: ignore[no-untyped-def]
    r = client.get(
        f"/v1/customers/{customer}/entitlements/{feature}", params={"at": iso(when)} if when else {}
    )
    assert r.status_code == 200, r.text
    return r.json()


def check(client, customer, feature, amount) -> dict:  # type: ignore[no-untyped-def]
    r = client.post(
        f"/v1/customers/{customer}/entitlements/{feature}/check", json={"amount": amount}
    )
    assert r.status_code == 200, r.text
    return r.json()


def calls(client, customer: str, n: int, when=T0) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/events", json=[event("call", customer, when) for _ in range(n)])
    assert r.json()["accepted"] == n


def notices(client, customer: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = client.get(f"/v1/customers/{customer}/notifications")
    assert r.status_code == 200, r.text
    return r.json()["notifications"]


@pytest.fixture
def ladder(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=LADDER).status_code == 200
    return client


def test_hard_limit_just_below_at_and_above(ladder, clock) -> None:  # type: ignore[no-untyped-def]
    calls(ladder, "a", 9)
    b = get(ladder, "a", "calls")
    assert (num(b["usage"]), num(b["limit"]), num(b["hard_limit"]), num(b["remaining"])) == (
        9,
        10,
        10,
        1,
    )
    assert b["has_access"] is True
    assert check(ladder, "a", "calls", 1)["allowed"] is True
    refused = check(ladder, "a", "calls", 2)
    assert refused["allowed"] is False and "would exceed the limit of 10" in refused["reason"]
    calls(ladder, "a", 1)
    b = get(ladder, "a", "calls")
    assert (b["has_access"], num(b["remaining"]), num(b["overage"])) == (False, 0, 0)
    assert check(ladder, "a", "calls", 1)["allowed"] is False
    calls(ladder, "a", 2)  # events keep being metered past the block
    b = get(ladder, "a", "calls")
    assert (num(b["usage"]), num(b["overage"]), num(b["remaining"])) == (12, 2, 0)


def test_soft_limit_blocks_past_the_slack(ladder) -> None:  # type: ignore[no-untyped-def]
    ladder.post("/v1/events", json=[event("upload", "a", T0, bytes=104)])
    b = get(ladder, "a", "soft")
    assert (num(b["limit"]), num(b["hard_limit"]), b["has_access"], num(b["overage"])) == (
        100,
        Decimal("105.00"),
        True,
        4,
    )
    assert check(ladder, "a", "soft", 1)["allowed"] is True
    assert check(ladder, "a", "soft", "1.01")["allowed"] is False
    ladder.post("/v1/events", json=[event("upload", "a", T0, bytes=1)])
    assert get(ladder, "a", "soft")["has_access"] is False


def test_overage_gauge_compares_the_level_and_bills_the_maximum(ladder) -> None:  # type: ignore[no-untyped-def]
    ladder.post("/v1/events", json=[event("volume", "a", T0, d=39)])
    b = get(ladder, "a", "over")
    assert (num(b["hard_limit"]), b["has_access"], num(b["overage"])) == (40, True, 14)
    assert (
        check(ladder, "a", "over", 1)["allowed"] is True
        and check(ladder, "a", "over", 2)["allowed"] is False
    )
    ladder.post("/v1/events", json=[event("volume", "a", T0 + minutes(1), d=1)])
    assert get(ladder, "a", "over")["has_access"] is False
    ladder.post("/v1/events", json=[event("volume", "a", T0 + minutes(2), d=-20)])
    b = get(ladder, "a", "over")
    assert (num(b["level"]), num(b["usage"]), b["has_access"]) == (20, 40, True)


def test_no_allowance_is_unlimited(ladder) -> None:  # type: ignore[no-untyped-def]
    ladder.post("/v1/events", json=[event("upload", "a", T0, bytes=10**9)])
    b = get(ladder, "a", "free")
    assert (b["limit"], b["hard_limit"], b["remaining"], b["has_access"]) == (
        None,
        None,
        None,
        True,
    )
    assert check(ladder, "a", "free", 10**9)["allowed"] is True


def test_thresholds_fire_once_each_also_several_at_once(ladder) -> None:  # type: ignore[no-untyped-def]
    calls(ladder, "a", 4)
    assert notices(ladder, "a") == []
    calls(ladder, "a", 5)  # 90 %: 50, 80 and 10 % remaining in one step
    got = [(n["type"], num(n["percent"])) for n in notices(ladder, "a")]
    assert got == [("usage.threshold", 50), ("usage.threshold", 80), ("usage.threshold", 90)]
    calls(ladder, "a", 1)  # 100 %: exhausted and, hard limit, blocked
    got = [(n["type"], num(n["percent"])) for n in notices(ladder, "a")][3:]
    assert got == [("usage.exhausted", 100), ("access.blocked", 100)]
    calls(ladder, "a", 3)
    assert len(notices(ladder, "a")) == 5  # nothing fires twice in a period
    first = notices(ladder, "a")[0]
    assert first["recipients"] == {"email": ["boss@a.example"], "in_app": False}
    assert first["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    assert first["status"] == "pending" and first["at"] == "2026-03-10T12:00:00Z"
    blocked = notices(ladder, "a")[4]
    assert blocked["recipients"]["in_app"] is True
    assert blocked["recipients"]["members"] == ["m1@a.example", "m2@a.example"]
    # every member is stopped, so every member is also told by e-mail (the owner first)
    assert blocked["recipients"]["email"] == ["boss@a.example", "m1@a.example", "m2@a.example"]
    # The next month starts fresh.
    ladder.app.state.services.clock.now = at("2026-04-02T00:00:00Z")
    calls(ladder, "a", 5, at("2026-04-02T00:00:00Z"))
    assert [n["type"] for n in notices(ladder, "a")][5:] == ["usage.threshold"]


def test_auto_upgrade_at_the_limit_carries_usage_and_stays(ladder, clock) -> None:  # type: ignore[no-untyped-def]
    calls(ladder, "up", 9)
    assert get(ladder, "up", "calls")["plan"] == "small"
    calls(ladder, "up", 1)
    b = get(ladder, "up", "calls")
    assert (b["plan"], num(b["usage"]), num(b["limit"]), b["has_access"]) == ("big", 10, 20, True)
    kinds = [n["type"] for n in notices(ladder, "up")]
    assert kinds[kinds.index("plan.upgrading") + 1] == "plan.upgraded"
    assert "access.blocked" not in kinds
    upgraded = next(n for n in notices(ladder, "up") if n["type"] == "plan.upgraded")
    assert upgraded["details"]["from_plan"] == "small" and upgraded["details"]["to_plan"] == "big"
    clock.now = at("2026-05-03T00:00:00Z")
    assert get(ladder, "up", "calls")["plan"] == "big"  # it stays
    assert get(ladder, "up", "calls", at("2026-03-10T08:00:00Z"))["plan"] == "small"  # history kept


def test_without_auto_upgrade_a_manual_upgrade_lifts_the_block(ladder) -> None:  # type: ignore[no-untyped-def]
    calls(ladder, "a", 10)
    assert get(ladder, "a", "calls")["has_access"] is False
    r = ladder.post("/v1/customers/a/subscription", json={"plan": "big"})
    assert r.status_code == 200 and r.json()["plan"] == "big"
    b = get(ladder, "a", "calls")
    assert (num(b["usage"]), num(b["limit"]), b["has_access"]) == (10, 20, True)
    assert notices(ladder, "a")[-1]["type"] == "access.restored"
    bad = ladder.post("/v1/customers/a/subscription", json={"plan": "gold"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("plan: unknown plan 'gold'")


@pytest.fixture
def demo(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    return client


def media(client, user: str, start, end) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/events",
        json=stream(
            "media.activity", "acme", start, end, user=user, stream=f"{user}/mic", kind="mic"
        ),
    )
    assert r.json()["rejected"] == []


def test_pooled_allowance_follows_the_highest_seat_count_of_the_period(demo, clock) -> None:  # type: ignore[no-untyped-def]
    assert num(get(demo, "acme", "media")["included"]) == 5000  # 10 seats × 500
    r = demo.patch("/v1/customers/acme", json={"seats": 12, "effective_at": "2026-03-12T00:00:00Z"})
    assert r.status_code == 200 and r.json()["seats"] == 10  # still 10 at the clock's now (03-10)
    demo.patch("/v1/customers/acme", json={"seats": 8, "effective_at": "2026-03-20T00:00:00Z"})
    assert num(get(demo, "acme", "media", at("2026-03-11T00:00:00Z"))["included"]) == 5000
    assert num(get(demo, "acme", "media", at("2026-03-15T00:00:00Z"))["included"]) == 6000
    assert (
        num(get(demo, "acme", "media", at("2026-03-25T00:00:00Z"))["included"]) == 6000
    )  # highest so far
    assert (
        num(get(demo, "acme", "media", at("2026-04-02T00:00:00Z"))["included"]) == 4000
    )  # new month
    bad = demo.patch("/v1/customers/acme", json={"seats": -1})
    assert bad.status_code == 422 and "seats" in bad.json()["error"]


def test_topup_lifts_the_block_rearms_thresholds_and_does_not_roll_over(demo, clock) -> None:  # type: ignore[no-untyped-def]
    demo.patch("/v1/customers/acme", json={"seats": 1, "effective_at": "2026-03-01T00:00:00Z"})
    media(demo, "u1", T0 - minutes(500), T0)  # 500 of 500 minutes
    b = get(demo, "acme", "media")
    assert (num(b["usage"]), b["has_access"]) == (500, False)
    assert [n["type"] for n in notices(demo, "acme")] == [
        "usage.threshold",
        "usage.threshold",
        "usage.threshold",
        "usage.exhausted",
        "access.blocked",
    ]
    r = demo.post("/v1/customers/acme/topups", json={"feature": "media", "blocks": 1, "id": "t-1"})
    assert r.status_code == 201 and r.json()["price"] == "5.00" and num(r.json()["amount"]) == 1000
    again = demo.post(
        "/v1/customers/acme/topups", json={"feature": "media", "blocks": 1, "id": "t-1"}
    )
    assert again.status_code == 200 and again.json()["created"] is False
    b = get(demo, "acme", "media")
    assert (num(b["granted"]), num(b["limit"]), b["has_access"]) == (
        1000,
        1500,
        True,
    )  # counted once
    assert [n["type"] for n in notices(demo, "acme")][5:] == ["topup.applied", "access.restored"]
    # 500/1500 = 33 %: the 85/90/95 % levels are armed again and fire again when reached.
    clock.now = T0 + minutes(800)
    media(demo, "u2", T0, T0 + minutes(776))  # 1276 / 1500 = 85.07 %
    assert [(n["type"], num(n["percent"])) for n in notices(demo, "acme")][7:] == [
        ("usage.threshold", 85)
    ]
    # Gone at the end of the month: April starts with no grant.
    b = get(demo, "acme", "media", at("2026-04-01T00:00:00Z"))
    assert (num(b["granted"]), num(b["limit"])) == (0, 500)
    wrong = demo.post(
        "/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "t-1"}
    )
    assert wrong.status_code == 409 and wrong.json()["error"].startswith(
        "id: 't-1' was already used"
    )


def test_a_rollover_credit_carries_its_unused_part_once(demo) -> None:  # type: ignore[no-untyped-def]
    r = demo.post(
        "/v1/customers/acme/grants",
        json={
            "feature": "media",
            "amount": 300,
            "id": "c-1",
            "rollover": True,
            "effective_at": "2026-03-02T00:00:00Z",
        },
    )
    assert r.status_code == 201 and r.json()["expires_at"] == "2026-05-01T00:00:00Z"
    media(demo, "u1", T0, T0 + minutes(5100))  # 5100 of 5300: 200 unused, all of it the credit's
    assert num(get(demo, "acme", "media", at("2026-03-31T23:00:00Z"))["granted"]) == 300
    assert num(get(demo, "acme", "media", at("2026-04-02T00:00:00Z"))["granted"]) == 200
    assert num(get(demo, "acme", "media", at("2026-05-02T00:00:00Z"))["granted"]) == 0  # once


def test_time_alone_crosses_thresholds_of_an_open_stream(demo, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.notifications.scheduler import tick

    demo.patch("/v1/customers/acme", json={"seats": 1, "effective_at": "2026-03-01T00:00:00Z"})
    clock.now = T0
    media(demo, "u1", T0, None)  # the microphone stays on
    assert notices(demo, "acme") == []
    services = demo.app.state.services
    assert (
        tick(services.engine, services.catalogs, clock) == 3
    )  # the other customers a new catalog leaves to evaluate
    clock.now = T0 + minutes(430)
    assert tick(services.engine, services.catalogs, clock) == 1
    first = notices(demo, "acme")
    # 85 % of 500 = 425 minutes: reached the moment minute 425 starts (each span rounds up).
    assert [(n["type"], num(n["percent"]), n["at"]) for n in first] == [
        ("usage.threshold", 85, "2026-03-10T16:04:00.000001Z")
    ]
    clock.now = T0 + minutes(600)
    tick(services.engine, services.catalogs, clock)
    got = [(n["type"], n["at"]) for n in notices(demo, "acme")][1:]
    assert got == [
        ("usage.threshold", "2026-03-10T16:29:00.000001Z"),
        ("usage.threshold", "2026-03-10T16:54:00.000001Z"),
        ("usage.exhausted", "2026-03-10T17:19:00.000001Z"),
        ("access.blocked", "2026-03-10T17:19:00.000001Z"),
    ]
    assert check(demo, "acme", "media", 1)["allowed"] is False


@pytest.mark.parametrize(
    "db_url", ["postgresql"], indirect=True
)  # SQLite has no server connection to lose
def test_a_check_answers_after_the_database_dropped_every_connection(demo, db_url) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL restarted (or a proxy cut the pooled connections): the cached check's probe
    finds its connection dead and asks again on a new one, instead of a 500."""
    from sqlalchemy import create_engine, text

    path = "/v1/customers/acme/entitlements/media/check"
    first = demo.post(path, json={"amount": 1})
    assert demo.post(path, json={"amount": 1}).json() == first.json()  # the second is a cache hit
    killer = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    killer.dispose()
    assert cut >= 1
    again = demo.post(path, json={"amount": 1})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
