"""What a console reads, on SQLite and PostgreSQL: every balance of a customer at once,
invoices by number (dated in the customer's zone), and invoices and notices a page at a
time."""

from __future__ import annotations

from typing import Any

import pytest

from quotameter.invoices.service import finalize_due
from support import at, event, iso

SEPT_15 = at("2026-09-15T03:00:00Z")  # noon in Tokyo, the evening before in Los Angeles
JAN_3 = at("2027-01-03T00:00:00Z")  # December has ended everywhere, and its grace window too

CATALOG: dict[str, Any] = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count"},
        "bytes": {"event_type": "upload", "aggregation": "sum", "value_property": "bytes"},
        "volume": {"event_type": "volume", "aggregation": "gauge", "delta_property": "d"},
    },
    "plans": {
        "small": {
            "next_plan": "big",
            "prices": [{"type": "flat", "amount": "10.00"}],
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
                "uploads": {
                    "meter": "bytes",
                    "allowance": {"fixed": 100},
                    "enforcement": "soft",
                    "slack": 0.05,
                },
                "volume": {
                    "meter": "volume",
                    "allowance": {"fixed": 25},
                    "enforcement": "overage",
                    "overage_limit": 15,
                },
            },
        },
        "big": {
            "prices": [{"type": "flat", "amount": "20.00"}],
            "entitlements": {
                "calls": {"meter": "calls", "allowance": {"fixed": 20}, "enforcement": "hard"},
                "archive": {"meter": "bytes", "enforcement": "none"},
            },
        },
    },
    "customers": {
        "kestrel": {"plan": "small", "owner": "ops@kestrel.example", "timezone": "Asia/Tokyo"},
        "gull": {
            "plan": "small",
            "owner": "ops@gull.example",
            "timezone": "America/Los_Angeles",
        },
        "up": {"plan": "small", "owner": "boss@up.example", "auto_upgrade": True},
    },
}


@pytest.fixture
def api(client, clock):  # type: ignore[no-untyped-def]
    clock.now = SEPT_15
    r = client.put("/v1/catalog", json=CATALOG)
    assert r.status_code == 200, r.text
    return client


def post(client, events: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text


def ok(client, path: str, **params: Any) -> Any:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def entitlements(client, customer: str, **params: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return ok(client, f"/v1/customers/{customer}/entitlements", **params)  # type: ignore[no-any-return]


def features(body: dict[str, Any]) -> list[str]:
    return [b["feature"] for b in body["entitlements"]]


def finalize(client, clock) -> int:  # type: ignore[no-untyped-def]
    svc = client.app.state.services
    return finalize_due(svc.engine, svc.catalogs, clock())


def refused(r: Any, status: int, field: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith(f"{field}: "), r.text


# --- every balance at once ----------------------------------------------------------------


def test_every_balance_of_the_plan_as_the_single_reads_give_it(api, clock) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [event("call", "kestrel", SEPT_15) for _ in range(3)]
        + [
            event("upload", "kestrel", SEPT_15, bytes=104),
            event("volume", "kestrel", SEPT_15, d=7),
        ],
    )
    body = entitlements(api, "kestrel")
    assert (body["customer"], body["plan"], body["at"]) == ("kestrel", "small", iso(SEPT_15))
    assert features(body) == ["calls", "uploads", "volume"]  # sorted by feature
    for balance in body["entitlements"]:
        assert balance == ok(api, f"/v1/customers/kestrel/entitlements/{balance['feature']}")
    calls, uploads, volume = body["entitlements"]
    assert (calls["usage"], calls["remaining"], uploads["overage"], volume["level"]) == (3, 7, 4, 7)
    # September in Tokyo: it began at 15:00 UTC on 31 August
    assert calls["period"] == {"start": "2026-08-31T15:00:00Z", "end": "2026-09-30T15:00:00Z"}

    # `at` as for a single balance: an instant of August in Tokyo, before any usage
    before = at("2026-08-31T14:00:00Z")
    earlier = entitlements(api, "kestrel", at=iso(before))
    assert earlier["at"] == iso(before) and features(earlier) == features(body)
    assert [b["usage"] for b in earlier["entitlements"]] == [0, 0, 0]
    for balance in earlier["entitlements"]:
        single = f"/v1/customers/kestrel/entitlements/{balance['feature']}"
        assert balance == ok(api, single, at=iso(before))


def test_the_plan_in_force_at_the_instant_asked_about(api, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = at("2026-09-20T00:00:00Z")
    r = api.post(
        "/v1/customers/gull/subscription",
        json={"plan": "big", "effective_at": "2026-09-18T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    now = entitlements(api, "gull")
    assert (now["plan"], features(now)) == ("big", ["archive", "calls"])
    assert {b["plan"] for b in now["entitlements"]} == {"big"}
    then = entitlements(api, "gull", at="2026-09-17T00:00:00Z")
    assert (then["plan"], features(then)) == ("small", ["calls", "uploads", "volume"])


def test_an_owed_upgrade_is_settled_before_reading_and_the_cache_serves_repeats(api) -> None:  # type: ignore[no-untyped-def]
    post(api, [event("call", "up", SEPT_15) for _ in range(10)])
    body = entitlements(api, "up")  # no read before: this one settles the upgrade owed
    assert (body["plan"], features(body)) == ("big", ["archive", "calls"])
    calls = body["entitlements"][1]
    assert (calls["usage"], calls["limit"], calls["has_access"]) == (10, 20, True)
    cache = api.app.state.services.balances
    hits = cache.hits
    assert entitlements(api, "up") == body
    assert cache.hits == hits + 2  # nothing changed: each balance from the cache


def test_unknown_customers_bad_instants_and_keys(api) -> None:  # type: ignore[no-untyped-def]
    refused(api.get("/v1/customers/nobody/entitlements"), 404, "customer")
    refused(api.get("/v1/customers/kestrel/entitlements", params={"at": "yesterday"}), 422, "at")
    key = api.post("/v1/keys", json={"role": "customer", "customer": "gull"}).json()["key"]
    mine = {"Authorization": f"Bearer {key}"}
    assert api.get("/v1/customers/gull/entitlements", headers=mine).status_code == 200
    r = api.get("/v1/customers/kestrel/entitlements", headers=mine)
    assert (r.status_code, r.json()["error"]) == (
        403,
        "customer: this key reads customer 'gull' only",
    )
    ingest = api.post("/v1/keys", json={"role": "ingest"}).json()["key"]
    r = api.get("/v1/customers/gull/entitlements", headers={"Authorization": f"Bearer {ingest}"})
    assert r.status_code == 403


# --- invoice numbers in the customer's zone, and invoices by number ------------------------


@pytest.fixture
def invoiced(api, clock):  # type: ignore[no-untyped-def]
    """September to December finalized for every customer."""
    clock.now = JAN_3
    assert finalize(api, clock) == 12
    return api


def invoices(client, customer: str, **params: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return ok(client, f"/v1/customers/{customer}/invoices", **params)  # type: ignore[no-any-return]


def test_numbers_are_the_period_start_date_in_the_customer_zone(invoiced) -> None:  # type: ignore[no-untyped-def]
    tokyo = invoices(invoiced, "kestrel")["invoices"]
    assert [(i["number"], i["period"]["start"]) for i in tokyo] == [
        ("kestrel-20260901", "2026-08-31T15:00:00Z"),
        ("kestrel-20261001", "2026-09-30T15:00:00Z"),
        ("kestrel-20261101", "2026-10-31T15:00:00Z"),
        ("kestrel-20261201", "2026-11-30T15:00:00Z"),  # not the UTC date, 30 November
    ]
    los_angeles = invoices(invoiced, "gull")["invoices"]
    assert [(i["number"], i["period"]["start"]) for i in los_angeles] == [
        ("gull-20260901", "2026-09-01T07:00:00Z"),
        ("gull-20261001", "2026-10-01T07:00:00Z"),
        ("gull-20261101", "2026-11-01T07:00:00Z"),  # still daylight time at midnight
        ("gull-20261201", "2026-12-01T08:00:00Z"),
    ]
    utc = invoices(invoiced, "up")["invoices"]
    assert utc[-1]["number"] == "up-20261201"
    # the running invoice is numbered the same way
    running = ok(invoiced, "/v1/customers/kestrel/invoices/upcoming")
    assert (running["number"], running["period"]["start"]) == (
        "kestrel-20270101",
        "2026-12-31T15:00:00Z",
    )
    csv = invoiced.get("/v1/customers/kestrel/invoices", params={"format": "csv"}).text
    assert "\r\nkestrel-20261201,kestrel,finalized,2026-11-30T15:00:00Z," in csv


def test_an_invoice_is_read_by_number_as_by_id(invoiced) -> None:  # type: ignore[no-untyped-def]
    for customer in ("kestrel", "gull"):
        for inv in invoices(invoiced, customer)["invoices"]:
            by_id = ok(invoiced, f"/v1/customers/{customer}/invoices/{inv['id']}")
            by_number = ok(invoiced, f"/v1/customers/{customer}/invoices/{inv['number']}")
            assert by_number == by_id == inv
            page = invoiced.get(f"/v1/customers/{customer}/invoices/{inv['number']}.html")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert (
                page.text
                == invoiced.get(f"/v1/customers/{customer}/invoices/{inv['id']}.html").text
            )
            assert f"Invoice {inv['number']}" in page.text
            csv = invoiced.get(
                f"/v1/customers/{customer}/invoices/{inv['number']}", params={"format": "csv"}
            )
            assert csv.status_code == 200 and csv.text.splitlines()[1].startswith(inv["number"])


def test_numbers_that_name_no_invoice_of_the_customer(invoiced) -> None:  # type: ignore[no-untyped-def]
    path = "/v1/customers/kestrel/invoices/"
    for number in (
        "gull-20261201",  # another customer's
        "kestrel-20261130",  # the UTC date of December's start
        "kestrel-20270101",  # running, not finalized
        "kestrel-20261301",
        "kestrel-2026120",
        "kestrel-2026-12-01",
        "kestrel-",
        "kestrel",
        "-1",
        "december",
    ):
        refused(invoiced.get(path + number), 404, "invoice")
        refused(invoiced.get(path + number + ".html"), 404, "invoice")
    [gull_december] = invoices(invoiced, "gull")["invoices"][-1:]
    refused(invoiced.get(path + str(gull_december["id"])), 404, "invoice")  # an id stays an id
    refused(invoiced.get(path + "0"), 422, "invoice")
    refused(invoiced.get(path + str(2**63)), 422, "invoice")
    refused(invoiced.get("/v1/customers/nobody/invoices/nobody-20261201"), 404, "customer")
    key = invoiced.post("/v1/keys", json={"role": "customer", "customer": "gull"}).json()["key"]
    mine = {"Authorization": f"Bearer {key}"}
    r = invoiced.get(path + "kestrel-20261201", headers=mine)
    assert (r.status_code, r.json()["error"]) == (
        403,
        "customer: this key reads customer 'gull' only",
    )
    own = invoiced.get("/v1/customers/gull/invoices/gull-20261201.html", headers=mine)
    assert own.status_code == 200


# --- a page at a time -----------------------------------------------------------------------


def test_invoices_a_page_at_a_time(invoiced) -> None:  # type: ignore[no-untyped-def]
    every = invoices(invoiced, "kestrel")
    assert "next_cursor" not in every  # the whole list, as without paging
    first = invoices(invoiced, "kestrel", limit=3)
    assert first["invoices"] == every["invoices"][:3]
    assert isinstance(first["next_cursor"], str)
    rest = invoices(invoiced, "kestrel", limit=3, cursor=first["next_cursor"])
    assert (rest["invoices"], rest["next_cursor"]) == (every["invoices"][3:], None)
    exactly = invoices(invoiced, "kestrel", limit=4)
    assert (exactly["invoices"], exactly["next_cursor"]) == (every["invoices"], None)
    # one at a time, to the end
    seen, cursor = [], None
    while True:
        page = invoices(invoiced, "kestrel", limit=1, **({"cursor": cursor} if cursor else {}))
        seen += page["invoices"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == every["invoices"]
    # a cursor alone: everything after it
    after = invoices(invoiced, "kestrel", cursor=first["next_cursor"])
    assert (after["invoices"], after["next_cursor"]) == (every["invoices"][3:], None)
    # CSV: the same page, and the next cursor in a header
    csv = invoiced.get("/v1/customers/kestrel/invoices", params={"format": "csv", "limit": 3})
    assert csv.headers["next-cursor"] == first["next_cursor"]
    numbers = {line.split(",")[0] for line in csv.text.splitlines()[1:]}
    assert numbers == {inv["number"] for inv in every["invoices"][:3]}


def test_bad_paging_is_refused_by_name(invoiced) -> None:  # type: ignore[no-untyped-def]
    path = "/v1/customers/kestrel/invoices"
    for cursor in ("nope", "", "!!!!", "a" * 201, "bm90aWZpY2F0aW9uczox"):  # the last: a notice's
        refused(invoiced.get(path, params={"cursor": cursor}), 422, "cursor")
    for limit in ("0", "1001", "x"):
        refused(invoiced.get(path, params={"limit": limit}), 422, "limit")
    refused(invoiced.get("/v1/customers/nobody/invoices", params={"limit": 1}), 404, "customer")


def notices(client, customer: str, **params: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return ok(client, f"/v1/customers/{customer}/notifications", **params)  # type: ignore[no-any-return]


def test_notices_a_page_at_a_time(api) -> None:  # type: ignore[no-untyped-def]
    post(api, [event("call", "kestrel", SEPT_15) for _ in range(11)])  # 50, 80, 90 %, all, blocked
    every = notices(api, "kestrel")
    assert len(every["notifications"]) == 5 and every["next_cursor"] is None
    ids = [n["id"] for n in every["notifications"]]
    first = notices(api, "kestrel", limit=2)
    assert [n["id"] for n in first["notifications"]] == ids[:2]
    second = notices(api, "kestrel", limit=2, cursor=first["next_cursor"])
    assert [n["id"] for n in second["notifications"]] == ids[2:4]
    last = notices(api, "kestrel", limit=2, cursor=second["next_cursor"])
    assert ([n["id"] for n in last["notifications"]], last["next_cursor"]) == (ids[4:], None)
    assert (
        first["notifications"] + second["notifications"] + last["notifications"]
        == every["notifications"]
    )
    # `after`, an id, keeps working, and pages the same way
    after = notices(api, "kestrel", after=ids[1], limit=2)
    assert after == second
    exactly = notices(api, "kestrel", limit=5)
    assert (exactly["notifications"], exactly["next_cursor"]) == (every["notifications"], None)

    path = "/v1/customers/kestrel/notifications"
    refused(api.get(path, params={"cursor": first["next_cursor"], "after": 1}), 422, "cursor")
    invoice_cursor = "aW52b2ljZXM6MQ"  # an invoice listing's
    for cursor in ("nope", "", invoice_cursor, "bm90aWZpY2F0aW9uczp4"):
        refused(api.get(path, params={"cursor": cursor}), 422, "cursor")
    refused(api.get(path, params={"limit": 0}), 422, "limit")
    refused(api.get("/v1/customers/nobody/notifications", params={"limit": 1}), 404, "customer")
