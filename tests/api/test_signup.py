"""Signing a customer up through the API (`POST /v1/customers`): the customer it makes, the
names it refuses, and catalog applies that keep it (both databases)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from support import ADMIN, at, event, running

T0 = at("2026-03-10T12:00:00Z")

CATALOG: dict[str, Any] = {
    "meters": {"mb": {"event_type": "upload", "aggregation": "sum", "value_property": "mb"}},
    "plans": {
        "basic": {
            "entitlements": {
                "storage": {
                    "meter": "mb",
                    "allowance": {"fixed": 100},
                    "enforcement": "hard",
                    "notify": {"percent_used": [80]},
                }
            }
        },
        "pro": {
            "entitlements": {
                "storage": {"meter": "mb", "allowance": {"fixed": 1000}, "enforcement": "hard"}
            }
        },
    },
    "customers": {"acme": {"plan": "basic", "admins": ["ops@acme.example"]}},
}

NORTHWIND = {
    "name": "northwind",
    "plan": "basic",
    "seats": 4,
    "timezone": "Europe/Paris",
    "billing_anchor": "2026-01-15",
    "admins": ["ops@northwind.example"],
    "owner": "boss@northwind.example",
    "members": ["a@northwind.example"],
    "auto_upgrade": False,
}


@pytest.fixture
def api(client: Any, clock: Any) -> Any:
    clock.now = T0
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    return client


def test_a_signed_up_customer_is_answered_like_a_declared_one(api: Any) -> None:
    made = api.post("/v1/customers", json={**NORTHWIND, "effective_at": "2026-03-09T08:00:00Z"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body == {
        "key": "northwind",
        "plan": "basic",
        "seats": 4,
        "admins": ["ops@northwind.example"],
        "owner": "boss@northwind.example",
        "members": ["a@northwind.example"],
        "timezone": "Europe/Paris",
        "billing_anchor": "2026-01-15",
        "auto_upgrade": False,
        "at": "2026-03-10T12:00:00Z",
        "plan_changes": [],
        "created_at": "2026-03-09T08:00:00Z",
    }
    got = api.get("/v1/customers/northwind").json()
    assert got == {k: v for k, v in body.items() if k != "created_at"}
    assert "northwind" in api.get("/v1/catalog").json()["customers"]


def test_a_signed_up_customer_gets_events_balances_notices_and_a_key(api: Any, clock: Any) -> None:
    from quotameter.notifications.scheduler import tick

    assert api.post("/v1/customers", json={"name": "northwind", "plan": "basic"}).status_code == 201
    sent = api.post("/v1/events", json=[event("upload", "northwind", T0, mb=85)])
    assert sent.json()["accepted"] == 1, sent.text
    svc = api.app.state.services
    tick(svc.engine, svc.catalogs, clock)
    balance = api.get("/v1/customers/northwind/entitlements/storage").json()
    assert (balance["usage"], balance["limit"], balance["has_access"]) == (85, 100, True)
    notices = api.get("/v1/customers/northwind/notifications").json()["notifications"]
    assert [(n["type"], n["percent"]) for n in notices] == [("usage.threshold", 80)]
    made = api.post("/v1/keys", json={"role": "customer", "customer": "northwind"})
    assert made.status_code == 201, made.text
    own = {"Authorization": f"Bearer {made.json()['key']}"}
    assert api.get("/v1/customers/northwind/entitlements/storage", headers=own).status_code == 200
    assert api.get("/v1/customers/acme/entitlements/storage", headers=own).status_code == 403
    listed = api.get("/v1/customers", params={"q": "north"}).json()["customers"]
    assert [(c["key"], c["state"], c["percent"]) for c in listed] == [
        ("northwind", "near_limit", 85)
    ]


def test_a_taken_name_is_a_409_declared_or_signed_up(api: Any) -> None:
    assert api.post("/v1/customers", json={"name": "northwind", "plan": "basic"}).status_code == 201
    for name in ("northwind", "acme"):
        r = api.post("/v1/customers", json={"name": name, "plan": "pro"})
        assert r.status_code == 409, r.text
        assert r.json()["error"] == f"name: a customer named {name!r} exists already"
    assert api.get("/v1/customers/acme").json()["plan"] == "basic"  # unchanged


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan": "gold"}, "plan: unknown plan 'gold'"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"admins": ["ops@x.example", "not-an-address"]}, "admins[1]: not an e-mail address"),
        ({"owner": "nobody"}, "owner: not an e-mail address"),
        ({"name": "north wind"}, "name: invalid name 'north wind'"),
        ({"name": ""}, "name: String should have at least 1 character"),
        ({"seats": -1}, "seats: Input should be greater than or equal to 0"),
        ({"billing_anchor": "soon"}, "billing_anchor: Input should be a valid date"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"effective_at": "yesterday"}, "effective_at: "),
    ],
)
def test_a_bad_field_is_a_422_naming_it(api: Any, change: dict[str, Any], message: str) -> None:
    r = api.post("/v1/customers", json={"name": "northwind", "plan": "basic", **change})
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(message), r.json()
    assert "northwind" not in api.get("/v1/catalog").json()["customers"]


def test_only_an_admin_key_signs_up_or_lists(api: Any) -> None:
    made = api.post("/v1/keys", json={"role": "customer", "customer": "acme"}).json()
    key = {"Authorization": f"Bearer {made['key']}"}
    r = api.post("/v1/customers", json={"name": "northwind", "plan": "basic"}, headers=key)
    assert r.status_code == 403
    assert api.get("/v1/customers", headers=key).status_code == 403


def test_a_later_catalog_apply_keeps_a_signed_up_customer(api: Any, clock: Any) -> None:
    assert api.post("/v1/customers", json=NORTHWIND).status_code == 201
    assert (
        api.post("/v1/events", json=[event("upload", "northwind", T0, mb=5)]).json()["accepted"]
        == 1
    )
    changed = {**CATALOG, "customers": {"acme": {"plan": "pro"}}}  # northwind not declared
    applied = api.put("/v1/catalog", json=changed)
    assert applied.status_code == 200, applied.text
    assert applied.json()["changes"]["customers"] == {
        "added": [],
        "removed": [],
        "changed": ["acme"],
    }
    kept = api.get("/v1/customers/northwind").json()
    assert (kept["plan"], kept["seats"], kept["timezone"]) == ("basic", 4, "Europe/Paris")
    assert api.get("/v1/customers/northwind/entitlements/storage").json()["usage"] == 5
    assert api.put("/v1/catalog", json=CATALOG).status_code == 200  # and again

    # A declaration in the document wins, and stays the customer's when it is left out again.
    declared = {**CATALOG, "customers": {**CATALOG["customers"], "northwind": {"plan": "pro"}}}
    assert api.put("/v1/catalog", json=declared).status_code == 200
    assert api.get("/v1/customers/northwind").json()["plan"] == "pro"
    assert api.put("/v1/catalog", json=CATALOG).status_code == 200
    assert api.get("/v1/customers/northwind").json()["plan"] == "pro"


def test_an_apply_removing_a_signed_up_customers_plan_is_refused(api: Any) -> None:
    assert api.post("/v1/customers", json={"name": "northwind", "plan": "pro"}).status_code == 201
    plans = {"basic": CATALOG["plans"]["basic"]}
    r = api.put("/v1/catalog", json={**CATALOG, "plans": plans})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert len(errors) == 1 and errors[0].startswith("customers.northwind.plan: unknown plan 'pro'")
    assert "signed up through the API" in errors[0]
    dry = api.put("/v1/catalog?dry_run=true", json={**CATALOG, "plans": plans})
    assert dry.status_code == 422
    assert api.get("/v1/customers/northwind").json()["plan"] == "pro"  # nothing applied
    # Declaring it on a plan that stays is how such a catalog goes through.
    declared = {"plans": plans, "customers": {"northwind": {"plan": "basic"}}}
    assert api.put("/v1/catalog", json={**CATALOG, **declared}).status_code == 200


def _sign_up_at_once(url: str, name: str) -> list[int]:
    """Two clients post the same sign-up at the same moment; their statuses."""
    start = threading.Barrier(2)
    answers: list[int] = []

    def sign_up() -> None:
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:
            start.wait()
            r = http.post("/v1/customers", json={"name": name, "plan": "basic"})
            answers.append(r.status_code)

    threads = [threading.Thread(target=sign_up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_sign_ups_of_one_name_at_once_make_one_customer(db_url: str, clock: Any) -> None:
    clock.now = T0
    with running(db_url, clock) as (_, _, url):
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:
            assert http.put("/v1/catalog", json=CATALOG).status_code == 200
        for round_ in range(3):
            answers = _sign_up_at_once(url, f"twin{round_}")
            assert sorted(answers) == [201, 409], answers
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:
            customers = http.get("/v1/catalog").json()["customers"]
            assert sorted(customers) == ["acme", "twin0", "twin1", "twin2"]


def test_a_signed_up_customer_is_billed_from_the_period_it_signed_up_in(
    client: Any, clock: Any
) -> None:
    from datetime import timedelta

    from quotameter.invoices.service import finalize_due

    priced = {**CATALOG, "plans": {**CATALOG["plans"]}}
    priced["plans"]["pro"] = {
        **CATALOG["plans"]["pro"],
        "prices": [{"type": "flat", "amount": "299.00"}],
    }
    clock.now = at("2026-01-05T09:00:00Z")  # the first catalog
    assert client.put("/v1/catalog", json=priced).status_code == 200
    clock.now = at("2026-06-10T09:00:00Z")
    made = client.post("/v1/customers", json={"name": "late", "plan": "pro"})
    assert made.status_code == 201, made.text
    svc = client.app.state.services
    finalize_due(svc.engine, svc.catalogs, at("2026-08-02T12:00:00Z"), timedelta(days=1))
    invoices = client.get("/v1/customers/late/invoices").json()["invoices"]
    # June (signed up on the 10th) and July: nothing for January to May
    assert [(i["number"], i["total"]) for i in invoices] == [
        ("late-20260601", "299.00"),
        ("late-20260701", "299.00"),
    ]
