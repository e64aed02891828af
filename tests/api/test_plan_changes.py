"""Plan changes that take a feature away, or make it unlimited, while something still refers
to it."""

from __future__ import annotations

from decimal import Decimal

from support import at, event, minutes

CATALOG = {
    "meters": {
        "media": {
            "event_type": "media",
            "aggregation": "duration",
            "stream_property": "stream",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "unit": "minute",
        },
        "mb": {"event_type": "upload", "aggregation": "sum", "value_property": "mb"},
    },
    "plans": {
        "team": {
            "entitlements": {
                "media": {
                    "meter": "media",
                    "allowance": {"fixed": 60},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50]},
                },
                "storage": {"meter": "mb", "allowance": {"fixed": 10}, "enforcement": "hard"},
            }
        },
        "basic": {
            "entitlements": {
                "storage": {"meter": "mb", "allowance": {"fixed": 10}, "enforcement": "hard"}
            }
        },
        "unlimited": {"entitlements": {"storage": {"meter": "mb", "enforcement": "none"}}},
    },
    "customers": {
        "a": {"plan": "team", "admins": ["ops@a.example"]},
        "b": {"plan": "team", "admins": ["ops@b.example"]},
    },
}
T0 = at("2026-03-10T09:00:00Z")


def mic_on(client, customer: str, since) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/events", json=[event("media", customer, since, stream="mic", action="start")]
    )
    assert r.json()["accepted"] == 1, r.text


def test_a_wake_up_for_a_feature_the_plan_no_longer_has_is_dropped(client, clock) -> None:  # type: ignore[no-untyped-def]
    """a's open microphone had a wake-up at 50 % of its media minutes; a then moved to a plan
    without media. The scheduler drops that wake-up instead of failing on it at every pass,
    so b's wake-up, due later, still records b's notice at its moment."""
    from quotameter.notifications.scheduler import tick

    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    mic_on(client, "a", T0 - minutes(10))
    mic_on(client, "b", T0)
    for customer in ("a", "b"):  # reading settles each: their wake-ups are set
        assert client.get(f"/v1/customers/{customer}/entitlements/media").status_code == 200
    assert client.post("/v1/customers/a/subscription", json={"plan": "basic"}).status_code == 200

    clock.now = T0 + minutes(45)
    services = client.app.state.services
    assert (
        tick(services.engine, services.catalogs, clock) == 2
    )  # a's wake-up dropped, b's evaluated
    notices = client.get("/v1/customers/b/notifications").json()["notifications"]
    assert [(n["type"], n["at"]) for n in notices] == [
        ("usage.threshold", "2026-03-10T09:29:00.000001Z")
    ]
    assert client.get("/v1/customers/a/notifications").json()["notifications"] == []


def test_a_rollover_credit_carries_whole_out_of_a_period_that_ended_unlimited(client) -> None:  # type: ignore[no-untyped-def]
    """February ended on a plan without a limit, so none of the rollover credit bought in
    February was used: all of it carries into March, once."""
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    r = client.post(
        "/v1/customers/a/grants",
        json={
            "feature": "storage",
            "amount": 5,
            "id": "c-1",
            "rollover": True,
            "effective_at": "2026-02-20T00:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    for plan, effective in (
        ("unlimited", "2026-02-25T00:00:00Z"),
        ("basic", "2026-03-01T00:00:00Z"),
    ):
        r = client.post(
            "/v1/customers/a/subscription", json={"plan": plan, "effective_at": effective}
        )
        assert r.status_code == 200, r.text
    b = client.get(
        "/v1/customers/a/entitlements/storage", params={"at": "2026-03-10T00:00:00Z"}
    ).json()
    assert (Decimal(str(b["granted"])), Decimal(str(b["limit"]))) == (5, 15)
    b = client.get(
        "/v1/customers/a/entitlements/storage", params={"at": "2026-04-10T00:00:00Z"}
    ).json()
    assert Decimal(str(b["granted"])) == 0


LADDER = {
    "meters": {"calls": {"event_type": "call", "aggregation": "count"}},
    "plans": {
        "small": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 20},
                    "enforcement": "soft",
                    "slack": 0.1,
                    "notify": {"percent_remaining": [25]},
                }
            }
        },
        "tight": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 16},
                    "enforcement": "hard",
                    "notify": {"percent_used": [40]},
                }
            }
        },
    },
    "customers": {"a": {"plan": "small", "admins": ["ops@a.example"]}},
}


def test_a_level_another_plan_defined_is_not_rearmed_while_usage_stays_above_it(client) -> None:  # type: ignore[no-untyped-def]
    """25 % remaining of small fired at 16 calls; tight does not define that level, and usage
    never fell below 75 % of any limit since: back on small it does not fire again."""
    assert client.put("/v1/catalog", json=LADDER).status_code == 200
    assert (
        client.post("/v1/events", json=[event("call", "a", T0) for _ in range(16)]).json()[
            "accepted"
        ]
        == 16
    )

    def thresholds() -> list[tuple[str, object]]:
        notices = client.get("/v1/customers/a/notifications").json()["notifications"]
        return [
            (n["details"]["plan"], n["percent"]) for n in notices if n["type"] == "usage.threshold"
        ]

    assert thresholds() == [("small", 75)]
    for plan in ("tight", "small"):
        assert client.post("/v1/customers/a/subscription", json={"plan": plan}).status_code == 200
    assert thresholds() == [("small", 75), ("tight", 40)]


def test_a_move_to_a_plan_without_a_limit_restores_access_and_a_move_back_blocks_again(
    client,
) -> None:  # type: ignore[no-untyped-def]
    """Members learn in-app that they may go on (the feature is unlimited now), and that they
    are stopped again once back on the limited plan."""
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    assert client.post("/v1/events", json=[event("upload", "a", T0, mb=12)]).json()["accepted"] == 1

    def blocks() -> list[str]:
        notices = client.get("/v1/customers/a/notifications").json()["notifications"]
        return [
            n["type"]
            for n in notices
            if n["feature"] == "storage" and n["type"].startswith("access.")
        ]

    assert blocks() == ["access.blocked"]
    assert (
        client.post("/v1/customers/a/subscription", json={"plan": "unlimited"}).status_code == 200
    )
    assert client.get("/v1/customers/a/entitlements/storage").json()["has_access"] is True
    assert blocks() == ["access.blocked", "access.restored"]
    assert client.post("/v1/customers/a/subscription", json={"plan": "basic"}).status_code == 200
    assert blocks() == ["access.blocked", "access.restored", "access.blocked"]
