"""The operators' list of customers (`GET /v1/customers`): states after real events, filters,
search, sort, paging, and a constant number of statements per page (both databases)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from support import at, event, statements

T0 = at("2026-03-10T12:00:00Z")
HOUR = at("2026-03-10T13:00:00Z") - T0

STORAGE = {
    "meter": "mb",
    "allowance": {"fixed": 100},
    "enforcement": "hard",
    "notify": {"percent_used": [80]},
}
CATALOG: dict[str, Any] = {
    "meters": {
        "mb": {
            "event_type": "upload",
            "aggregation": "sum",
            "value_property": "mb",
            "unit": "megabyte",
        },
        "calls": {"event_type": "call", "aggregation": "count", "unit": "call"},
    },
    "plans": {
        "hard": {
            "entitlements": {
                "storage": STORAGE,
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 10},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50]},
                },
            }
        },
        "over": {
            "entitlements": {
                "storage": {**STORAGE, "enforcement": "overage"},
            }
        },
        "free": {"entitlements": {"storage": {"meter": "mb", "enforcement": "none"}}},
    },
    "customers": {
        "blocked-co": {"plan": "hard"},
        "over-co": {"plan": "over"},
        "near-co": {"plan": "hard"},
        "ok-co": {"plan": "hard"},
        "OK-Two": {"plan": "hard"},
        "free-co": {"plan": "free"},
    },
}


def settle(api: Any, clock: Any) -> None:
    from quotameter.notifications.scheduler import tick

    svc = api.app.state.services
    tick(svc.engine, svc.catalogs, clock)


@pytest.fixture
def api(client: Any, clock: Any) -> Any:
    """Every state at once, after real events: blocked (100 of 100 MB), in overage (120 of
    100, no hard limit), near its limit (85 %, past the 80 % level), fine (its calls the
    most used at 30 %), never used, and unlimited."""
    clock.now = T0
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    earlier = T0 - HOUR
    events = [
        event("upload", "blocked-co", earlier, mb=100),
        event("upload", "over-co", earlier, mb=120),
        event("upload", "near-co", earlier, mb=85),
        event("call", "near-co", earlier),
        event("upload", "ok-co", earlier, mb=10),
        *(event("call", "ok-co", earlier) for _ in range(3)),
        event("upload", "free-co", earlier, mb=5000),
    ]
    sent = client.post("/v1/events", json=events)
    assert sent.json()["accepted"] == len(events), sent.text
    settle(client, clock)
    return client


def listing(api: Any, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/v1/customers", params=params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["customers"]
    return rows


def keys(api: Any, **params: Any) -> list[str]:
    return [row["key"] for row in listing(api, **params)]


def test_each_customer_has_its_state_and_most_used_feature(api: Any) -> None:
    rows = {row["key"]: row for row in listing(api)}
    assert rows["blocked-co"] == {
        "key": "blocked-co",
        "plan": "hard",
        "state": "blocked",
        "feature": "storage",
        "percent": 100,
        "usage": 100,
        "limit": 100,
        "unit": "megabyte",
        "since": "2026-03-10T12:00:00Z",
        "evaluated_at": "2026-03-10T12:00:00Z",
    }
    summary = {
        k: (r["state"], r["feature"], r["percent"], r["unit"], r["since"]) for k, r in rows.items()
    }
    assert summary == {
        "blocked-co": ("blocked", "storage", 100, "megabyte", "2026-03-10T12:00:00Z"),
        "over-co": ("overage", "storage", 120, "megabyte", "2026-03-10T12:00:00Z"),
        "near-co": ("near_limit", "storage", 85, "megabyte", None),
        "ok-co": ("ok", "calls", 30, "call", None),
        "OK-Two": ("ok", "calls", 0, "call", None),  # a tie: the feature first by name
        "free-co": ("unlimited", None, None, None, None),
    }


def test_filters_search_and_sort(api: Any) -> None:
    assert keys(api) == ["blocked-co", "free-co", "near-co", "ok-co", "OK-Two", "over-co"]
    assert keys(api, state="blocked") == ["blocked-co"]
    assert keys(api, state="overage") == ["over-co"]
    # Past the first notice level: the blocked and the overage customer as well.
    assert keys(api, state="near_limit") == ["blocked-co", "near-co", "over-co"]
    assert keys(api, state="unlimited") == ["free-co"]
    assert keys(api, q="OK") == ["ok-co", "OK-Two"]
    assert keys(api, q="-co", state="near_limit") == ["blocked-co", "near-co", "over-co"]
    assert keys(api, q="nobody") == []
    assert keys(api, sort="percent") == [
        "over-co",
        "blocked-co",
        "near-co",
        "ok-co",
        "OK-Two",
        "free-co",  # no percent: last
    ]


@pytest.mark.parametrize("sort", ["name", "percent"])
def test_pages_follow_each_other_to_the_last(api: Any, sort: str) -> None:
    whole = keys(api, sort=sort)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/v1/customers", params=params).json()
        seen += [row["key"] for row in body["customers"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and pages == 2
    filtered = api.get("/v1/customers", params={"state": "near_limit", "limit": 2}).json()
    assert [r["key"] for r in filtered["customers"]] == ["blocked-co", "near-co"]
    rest = api.get(
        "/v1/customers",
        params={"state": "near_limit", "limit": 2, "cursor": filtered["next_cursor"]},
    ).json()
    assert ([r["key"] for r in rest["customers"]], rest["next_cursor"]) == (["over-co"], None)


def test_since_stays_while_blocked_and_ends_with_the_block(api: Any, clock: Any) -> None:
    clock.now = T0 + HOUR
    assert (
        api.post("/v1/events", json=[event("upload", "blocked-co", T0, mb=5)]).json()["accepted"]
        == 1
    )
    # No level is left to reach, so the batch alone is not evaluated exactly: a change of
    # the customer is.
    assert api.patch("/v1/customers/blocked-co", json={"seats": 2}).status_code == 200
    row = next(r for r in listing(api) if r["key"] == "blocked-co")
    assert (row["state"], row["usage"], row["since"], row["evaluated_at"]) == (
        "blocked",
        105,
        "2026-03-10T12:00:00Z",  # blocked since then, still
        "2026-03-10T13:00:00Z",
    )
    credit = {"feature": "storage", "amount": 100, "id": "g1"}
    assert api.post("/v1/customers/blocked-co/grants", json=credit).status_code == 201
    settle(api, clock)
    row = next(r for r in listing(api) if r["key"] == "blocked-co")
    assert (row["state"], row["percent"], row["limit"], row["since"]) == ("ok", 52.5, 200, None)


def test_only_the_current_plan_and_period_count(api: Any, clock: Any) -> None:
    moved = api.post("/v1/customers/ok-co/subscription", json={"plan": "over"})
    assert moved.status_code == 200, moved.text
    row = next(r for r in listing(api) if r["key"] == "ok-co")
    assert (row["plan"], row["feature"], row["percent"]) == ("over", "storage", 10)  # no calls
    moved = api.post("/v1/customers/blocked-co/subscription", json={"plan": "free"})
    assert moved.status_code == 200
    row = next(r for r in listing(api) if r["key"] == "blocked-co")
    assert (row["plan"], row["state"], row["feature"]) == ("free", "unlimited", None)

    clock.now = at("2026-04-02T00:00:00Z")  # March has ended, nothing evaluated since
    rows = {r["key"]: r for r in listing(api)}
    assert rows["over-co"]["state"] == "ok" and rows["over-co"]["percent"] is None
    assert keys(api, state="near_limit") == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "asleep"}, "state: "),
        ({"sort": "size"}, "sort: "),
        ({"limit": 0}, "limit: "),
        ({"limit": 501}, "limit: "),
        ({"limit": "many"}, "limit: "),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor: not a cursor this listing gave"),
        ({"cursor": "!!"}, "cursor: not a cursor this listing gave"),
        ({"q": "x" * 201}, "q: "),
    ],
)
def test_a_bad_value_is_a_422_naming_it(api: Any, params: dict[str, Any], message: str) -> None:
    r = api.get("/v1/customers", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(message), r.json()


def test_pages_go_on_with_the_longest_keys(client: Any, clock: Any) -> None:
    clock.now = T0
    names = [f"{letter * 127}x" for letter in "abc"]
    doc = {**CATALOG, "customers": {name: {"plan": "over"} for name in names}}
    assert client.put("/v1/catalog", json=doc).status_code == 200
    events = [event("upload", name, T0 - HOUR, mb=123456.78 + i) for i, name in enumerate(names)]
    assert client.post("/v1/events", json=events).json()["accepted"] == 3
    settle(client, clock)
    for sort in ("name", "percent"):
        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"sort": sort, "limit": 1}
            if cursor:
                params["cursor"] = cursor
            r = client.get("/v1/customers", params=params)
            assert r.status_code == 200, r.text
            seen += [row["key"] for row in r.json()["customers"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == (names if sort == "name" else names[::-1])


def test_a_cursor_of_another_sort_is_refused(api: Any) -> None:
    cursor = api.get("/v1/customers", params={"limit": 1}).json()["next_cursor"]
    r = api.get("/v1/customers", params={"cursor": cursor, "sort": "percent"})
    assert r.status_code == 422
    assert r.json()["error"] == "cursor: a cursor of the list sorted by name, not by percent"


# --- a page costs the same statements at 10 customers as at 300 --------------------------------


def many(n: int) -> dict[str, Any]:
    customers = {f"c{i:04d}": {"plan": "hard" if i % 3 else "over"} for i in range(n)}
    return {**CATALOG, "customers": customers}


def stand_every_customer(api: Any, n: int) -> None:
    """A standing for each feature of every customer, as evaluations leave them."""
    from quotameter.notifications import repository
    from quotameter.store.engine import unit_of_work
    from quotameter.timeutil import to_us

    start, end = to_us(at("2026-03-01T00:00:00Z")), to_us(at("2026-04-01T00:00:00Z"))
    with unit_of_work(api.app.state.services.engine) as conn:
        for i in range(n):
            for feature in ("storage", "calls"):
                usage = Decimal(i * 37 % 120)
                repository.put_standing(
                    conn,
                    f"c{i:04d}",
                    feature,
                    period=(start, end),
                    usage=usage,
                    limit=Decimal(100),
                    percent=usage,
                    near=usage >= 80,
                    blocked=usage >= 100 and i % 3 != 0,
                    overage=usage > 100,
                    evaluated_us=to_us(T0),
                )


def statements_per_page(api: Any, n: int) -> dict[str, int]:
    assert api.put("/v1/catalog", json=many(n)).status_code == 200
    stand_every_customer(api, n)
    engine = api.app.state.services.engine
    out = {}
    for params in ({}, {"sort": "percent", "state": "near_limit"}, {"q": "c00", "limit": 500}):
        assert api.get("/v1/customers", params=params).status_code == 200  # warm
        with statements(engine) as seen:
            r = api.get("/v1/customers", params=params)
        assert r.status_code == 200 and r.json()["customers"]
        out[str(params)] = len(seen)
    return out


def test_a_page_costs_the_same_statements_whatever_the_number_of_customers(
    client: Any, clock: Any
) -> None:
    clock.now = T0
    small = statements_per_page(client, 10)
    large = statements_per_page(client, 300)
    assert small == large, (small, large)
    assert max(large.values()) <= 4, large  # the key, the catalog version, plans, standings
