"""Keys and roles: every endpoint needs a key, each role reaches exactly its endpoints, and a
customer key never sees another customer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text

from support import ADMIN, ADMIN_KEY, asgi_call, at, demo_catalog, event

WHEN = at("2026-03-10T10:00:00Z")
OPEN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz"}


@pytest.fixture
def api(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    return client


def new_key(api, role: str, customer: str | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = api.post("/v1/keys", json={"role": role, "customer": customer, "label": f"{role} key"})
    assert r.status_code == 201, r.text
    return r.json()


def bearer(key: dict[str, Any] | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key if isinstance(key, str) else key['key']}"}


# One request per endpoint group: (name, method, path, body).
def calls(customer: str) -> list[tuple[str, str, str, Any]]:
    return [
        ("catalog.put", "PUT", "/v1/catalog", demo_catalog()),
        ("catalog.get", "GET", "/v1/catalog", None),
        ("events", "POST", "/v1/events", [event("session.created", "docs", WHEN)]),
        (
            "balance",
            "GET",
            f"/v1/customers/{customer}/entitlements/media?at=2026-03-10T12:00:00Z",
            None,
        ),
        ("check", "POST", f"/v1/customers/{customer}/entitlements/media/check", {"amount": 1}),
        (
            "consume",
            "POST",
            f"/v1/customers/{customer}/entitlements/media/consume",
            {"id": "c1", "amount": 1},
        ),
        ("customer.get", "GET", f"/v1/customers/{customer}", None),
        ("customer.patch", "PATCH", f"/v1/customers/{customer}", {"seats": 11}),
        ("subscription", "POST", f"/v1/customers/{customer}/subscription", {"plan": "unlimited"}),
        (
            "topups",
            "POST",
            f"/v1/customers/{customer}/topups",
            {"feature": "media", "blocks": 1, "id": "t1"},
        ),
        (
            "grants.post",
            "POST",
            f"/v1/customers/{customer}/grants",
            {"feature": "media", "amount": 5, "id": "g1"},
        ),
        ("grants.get", "GET", f"/v1/customers/{customer}/grants", None),
        ("notifications", "GET", f"/v1/customers/{customer}/notifications", None),
        # max_seconds=0: the stream sends what is waiting and ends, so that a test client
        # can read it whole.
        (
            "notifications.stream",
            "GET",
            f"/v1/customers/{customer}/notifications/stream?max_seconds=0",
            None,
        ),
        (
            "usage",
            "GET",
            f"/v1/customers/{customer}/usage?feature=media&group_by=user&window=day",
            None,
        ),
        ("invoices.upcoming", "GET", f"/v1/customers/{customer}/invoices/upcoming", None),
        ("invoices", "GET", f"/v1/customers/{customer}/invoices", None),
        ("invoices.get", "GET", f"/v1/customers/{customer}/invoices/1", None),
        ("invoices.html", "GET", f"/v1/customers/{customer}/invoices/1.html", None),
        ("keys.list", "GET", "/v1/keys", None),
        ("keys.create", "POST", "/v1/keys", {"role": "ingest"}),
    ]


READS = {
    "balance",
    "check",
    "customer.get",
    "grants.get",
    "notifications",
    "notifications.stream",
    "usage",
    "invoices.upcoming",
    "invoices",
    "invoices.get",
    "invoices.html",
}
ALLOWED = {
    "admin": {name for name, *_ in calls("acme")},
    "ingest": {"events"},
    "customer": READS,
}


def send(api, method: str, path: str, body: Any, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return api.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", ["admin", "ingest", "customer"])
def test_each_role_reaches_exactly_its_endpoints(api, role: str) -> None:  # type: ignore[no-untyped-def]
    key = (
        bearer(ADMIN_KEY)
        if role == "admin"
        else bearer(new_key(api, role, "acme" if role == "customer" else None))
    )
    for name, method, path, body in calls("acme"):
        r = send(api, method, path, body, key)
        if name in ALLOWED[role]:  # let through (what the endpoint then says is its own business)
            assert r.status_code not in (401, 403) and r.status_code < 500, (
                role,
                name,
                r.status_code,
                r.text,
            )
        else:
            assert r.status_code == 403, (role, name, r.status_code, r.text)
            assert r.json()["error"].startswith(("authorization: ", "customer: ")), r.text


def test_every_endpoint_but_docs_and_health_needs_a_key(api) -> None:  # type: ignore[no-untyped-def]
    seen = 0
    for template, operations in api.get("/openapi.json").json()["paths"].items():
        if template in OPEN:
            continue
        path = re.sub(r"\{[^}]+\}", "acme", template)
        for method in operations:
            for headers in ({}, {"Authorization": "Basic abc"}, bearer("qm_not_a_key")):
                r = api.request(method, path, headers={"Authorization": "", **headers})
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert r.json()["error"].startswith("authorization: ")
                assert r.headers["www-authenticate"] == "Bearer"
            seen += 1
    assert seen >= 15
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert api.get(path, headers={"Authorization": ""}).status_code == 200


def test_a_customer_key_never_sees_another_customer(api) -> None:  # type: ignore[no-untyped-def]
    key = bearer(new_key(api, "customer", "acme"))
    for other in ("studio", "nobody-at-all", "ACME", "acme%2F..%2Fstudio"):
        for name, method, path, body in calls(other):
            if name not in READS:
                continue
            r = send(api, method, path, body, key)
            if "/" in other.replace("%2F", "/"):  # no such route: nothing about anyone
                assert (r.status_code, r.json()["error"]) == (
                    404,
                    f"path: no endpoint at {path.split('?')[0].replace('%2F', '/')}",
                )
                continue
            assert r.status_code == 403, (other, name, r.status_code, r.text)
            assert r.json()["error"] == "customer: this key reads customer 'acme' only"
    assert send(api, "GET", "/v1/customers/acme/entitlements/media", None, key).status_code == 200


def test_a_revoked_key_is_refused_at_once(api) -> None:  # type: ignore[no-untyped-def]
    made = new_key(api, "ingest")
    post = [event("session.created", "docs", WHEN)]
    assert api.post("/v1/events", json=post, headers=bearer(made)).status_code == 200
    r = api.delete(f"/v1/keys/{made['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = api.post("/v1/events", json=post, headers=bearer(made))
    assert (r.status_code, r.json()["error"]) == (401, "authorization: unknown or revoked key")
    assert api.delete("/v1/keys/key_nope").status_code == 404


def test_keys_are_shown_once_and_stored_as_a_digest(api, app) -> None:  # type: ignore[no-untyped-def]
    made = new_key(api, "customer", "acme")
    assert made["key"].startswith("qm_") and len(made["key"]) > 40
    listed = api.get("/v1/keys").json()["keys"]
    assert {k["id"] for k in listed} >= {made["id"]}
    assert all("key" not in k for k in listed)
    with app.state.services.engine.connect() as conn:
        stored = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM api_keys")) for v in row
        )
    assert made["key"] not in stored and ADMIN_KEY not in stored


def test_key_requests_are_checked(api) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/keys", json={"role": "root"})
    assert (r.status_code, r.json()["error"]) == (
        422,
        "role: must be one of admin, ingest, customer (got 'root')",
    )
    r = api.post("/v1/keys", json={"role": "customer"})
    assert (r.status_code, r.json()["error"]) == (
        422,
        "customer: required for a key of role 'customer'",
    )
    r = api.post("/v1/keys", json={"role": "customer", "customer": "ghost"})
    assert (r.status_code, r.json()["error"]) == (404, "customer: unknown customer 'ghost'")
    r = api.post("/v1/keys", json={"role": "ingest", "customer": "acme"})
    assert r.status_code == 422 and r.json()["error"].startswith(
        "customer: only a key of role 'customer'"
    )


def test_first_start_without_an_admin_key_makes_one_once(db_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from quotameter.server import create_app
    from quotameter.settings import Settings

    first = create_app(Settings(database_url=db_url, scheduler=False, tune_gc=False), clock=clock)
    made = first.state.services.generated_admin_key
    assert made and made.startswith("qm_")
    with TestClient(first) as c:
        assert c.get("/v1/keys", headers=bearer(made)).status_code == 200
    first.state.services.engine.dispose()
    again = create_app(Settings(database_url=db_url, scheduler=False, tune_gc=False), clock=clock)
    assert (
        again.state.services.generated_admin_key is None
    )  # an admin key exists: nothing new to show
    again.state.services.engine.dispose()
    env = create_app(
        Settings(database_url=db_url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY),
        clock=clock,
    )
    with TestClient(env, headers=ADMIN) as c:
        assert c.get("/v1/keys").status_code == 200
    env.state.services.engine.dispose()


# --- the key is checked before the body is read -------------------------------------------


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(api, app) -> None:  # type: ignore[no-untyped-def]
    revoked = new_key(api, "admin")
    assert api.delete(f"/v1/keys/{revoked['id']}").status_code == 200
    refusals = [
        ({}, "authorization: missing; send 'Authorization: Bearer <key>'"),
        ({"Authorization": "Basic abc"}, "authorization: must be 'Bearer <key>'"),
        (bearer("qm_not_a_key"), "authorization: unknown or revoked key"),
        (bearer(revoked), "authorization: unknown or revoked key"),
    ]
    seen = 0
    for template, operations in api.get("/openapi.json").json()["paths"].items():
        if template in OPEN:
            continue
        path = re.sub(r"\{[^}]+\}", "acme", template)
        for method in operations:
            for headers, message in refusals:
                # A 400 MB body is announced, and never sent.
                got = asgi_call(
                    app,
                    method.upper(),
                    path,
                    {**headers, "Content-Length": "400000000"},
                    [],
                    more=True,
                )
                assert (got.status, got.body, got.reads) == (401, {"error": message}, 0), (
                    method,
                    path,
                    headers,
                )
                assert got.headers["www-authenticate"] == "Bearer"
                assert (
                    got.headers["connection"] == "close"
                )  # the body is never read: the connection ends
            seen += 1
    assert seen >= 15
