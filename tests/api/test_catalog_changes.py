"""A new catalog can move usage (a meter rebuilt under a new definition) and limits (a plan's
allowance): every customer's standing is evaluated again, as after any other change."""

from __future__ import annotations

import copy

from support import at, event, minutes

CATALOG = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count", "filter": {"kind": ["api"]}},
        "media": {
            "event_type": "media",
            "aggregation": "duration",
            "stream_property": "stream",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "unit": "minute",
        },
    },
    "plans": {
        "p": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 10},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50], "recipients": "admins"},
                },
                "media": {
                    "meter": "media",
                    "allowance": {"fixed": 100},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50], "recipients": "admins"},
                },
            }
        }
    },
    "customers": {"c": {"plan": "p", "admins": ["ops@c.example"]}},
}
T0 = at("2026-03-10T12:00:00Z")


def notices(client) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    r = client.get("/v1/customers/c/notifications")
    assert r.status_code == 200, r.text
    return [(n["type"], n["feature"], n["at"]) for n in r.json()["notifications"]]


def test_a_rebuilt_meter_that_crosses_a_level_is_told(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    r = client.post("/v1/events", json=[event("call", "c", T0, kind="web") for _ in range(6)])
    assert r.json()["accepted"] == 6
    assert notices(client) == []  # web calls do not count yet
    clock.now = T0 + minutes(5)
    wider = copy.deepcopy(CATALOG)
    wider["meters"]["calls"]["filter"] = {"kind": ["api", "web"]}
    r = client.put("/v1/catalog", json=wider)
    assert r.status_code == 200 and r.json()["rebuilt_meters"] == ["calls"], r.text
    assert notices(client) == [("usage.threshold", "calls", "2026-03-10T12:05:00Z")]


def test_a_lowered_allowance_blocks_and_is_told(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    assert (
        client.post(
            "/v1/events", json=[event("call", "c", T0, kind="api") for _ in range(4)]
        ).json()["accepted"]
        == 4
    )
    assert notices(client) == []
    smaller = copy.deepcopy(CATALOG)
    smaller["plans"]["p"]["entitlements"]["calls"]["allowance"] = {"fixed": 4}
    assert client.put("/v1/catalog", json=smaller).status_code == 200
    assert client.get("/v1/customers/c/entitlements/calls").json()["has_access"] is False
    assert notices(client) == [
        ("usage.threshold", "calls", "2026-03-10T12:00:00Z"),
        ("access.blocked", "calls", "2026-03-10T12:00:00Z"),
    ]


def test_an_open_stream_is_timed_again_under_the_new_definition(client, clock) -> None:  # type: ignore[no-untyped-def]
    """The wake-up computed for the old definition would come too late: 50 minutes in whole
    hours is reached at once, not after 50 minutes."""
    from quotameter.notifications.scheduler import tick

    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    clock.now = T0
    r = client.post("/v1/events", json=[event("media", "c", T0, stream="mic", action="start")])
    assert r.json()["accepted"] == 1
    assert client.get("/v1/customers/c/entitlements/media").json()["usage"] == 0  # wake-up at 12:49
    clock.now = T0 + minutes(1)
    hours = copy.deepcopy(CATALOG)
    hours["meters"]["media"]["rounding"] = {"unit_seconds": 3600, "mode": "ceil"}
    assert client.put("/v1/catalog", json=hours).status_code == 200
    services = client.app.state.services
    tick(services.engine, services.catalogs, clock)
    assert notices(client) == [("usage.threshold", "media", "2026-03-10T12:01:00Z")]
