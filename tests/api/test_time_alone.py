"""Levels that time alone reaches, without a request at that moment, are recorded at that moment.

An open media stream is one way (tests/api/test_entitlements.py); here are the others: an
event stamped ahead coming due, and a new period that starts past a level (a gauge carries
its level into it; an allowance of zero is reached at once).
"""

from __future__ import annotations

from support import at, event, minutes

CATALOG = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count"},
        "hours": {"event_type": "volume", "aggregation": "gauge", "value_property": "hours"},
    },
    "plans": {
        "p": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"per_seat": 5},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50], "recipients": "admins"},
                },
                "volume": {
                    "meter": "hours",
                    "allowance": {"fixed": 10},
                    "period": "billing_cycle",
                    "enforcement": "overage",
                    "overage_limit": 5,
                    "notify": {"percent_used": [80], "recipients": "owner"},
                },
            }
        }
    },
    "customers": {
        "c": {
            "plan": "p",
            "seats": 2,
            "admins": ["ops@c.example"],
            "owner": "boss@c.example",
            "billing_anchor": "2026-01-15",
        }
    },
}
T0 = at("2026-03-10T12:00:00Z")


def kinds(client) -> list[tuple[str, str | None, str]]:  # type: ignore[no-untyped-def]
    r = client.get("/v1/customers/c/notifications")
    assert r.status_code == 200, r.text
    return [(n["type"], n["feature"], n["at"]) for n in r.json()["notifications"]]


def tick(client, clock) -> int:  # type: ignore[no-untyped-def]
    from quotameter.notifications.scheduler import tick as scheduler_tick

    services = client.app.state.services
    return scheduler_tick(services.engine, services.catalogs, clock)


def test_events_stamped_ahead_reach_the_limit_when_they_come_due(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    r = client.post("/v1/events", json=[event("call", "c", T0 + minutes(30)) for _ in range(10)])
    assert r.json()["accepted"] == 10
    assert client.get("/v1/customers/c/entitlements/calls").json()["has_access"] is True
    assert kinds(client) == []
    clock.now = T0 + minutes(45)
    tick(client, clock)
    assert kinds(client) == [
        ("usage.threshold", "calls", "2026-03-10T12:30:00Z"),
        ("access.blocked", "calls", "2026-03-10T12:30:00Z"),
    ]


def test_a_level_carried_into_a_new_period_is_told_when_the_period_starts(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    assert (
        client.post("/v1/events", json=[event("volume", "c", T0, hours=9)]).json()["accepted"] == 1
    )
    assert kinds(client) == [("usage.threshold", "volume", "2026-03-10T12:00:00Z")]
    clock.now = at("2026-03-20T00:00:00Z")  # the billing cycle turned on the 15th, at 9 hours
    tick(client, clock)
    assert kinds(client)[1:] == [("usage.threshold", "volume", "2026-03-15T00:00:00Z")]
    tick(client, clock)
    assert len(kinds(client)) == 2  # once per period


def test_an_allowance_of_zero_blocks_when_the_period_starts(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    r = client.patch("/v1/customers/c", json={"seats": 0, "effective_at": "2026-03-20T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert kinds(client) == []  # March had 2 seats: 10 calls
    clock.now = at("2026-04-02T00:00:00Z")
    tick(client, clock)
    assert kinds(client) == [
        ("usage.threshold", "calls", "2026-04-01T00:00:00Z"),
        ("access.blocked", "calls", "2026-04-01T00:00:00Z"),
    ]


def test_a_scheduler_pass_asks_for_the_next_one_when_the_next_wake_up_is_due(client, clock) -> None:  # type: ignore[no-untyped-def]
    """The serving loop's pass: a tick, then the seconds until the earliest wake-up (the loop
    waits that long, or its poll if sooner)."""
    from quotameter.notifications.scheduler import Scheduler

    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    r = client.post("/v1/events", json=[event("call", "c", T0 + minutes(30)) for _ in range(10)])
    assert r.json()["accepted"] == 10
    services = client.app.state.services
    scheduler = Scheduler(services.engine, services.catalogs, clock, services.evaluate_soon)
    assert scheduler.step() == 30 * 60
    assert scheduler.run_pass() == scheduler.interval == 2.0
    assert kinds(client) == []
    clock.now = T0 + minutes(45)
    scheduler.step()
    assert kinds(client) == [
        ("usage.threshold", "calls", "2026-03-10T12:30:00Z"),
        ("access.blocked", "calls", "2026-03-10T12:30:00Z"),
    ]
