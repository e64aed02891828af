"""Signing in to the console with an API key: the cookie, CSRF, roles, isolation, sign-out,
revocation and expiry (both databases)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ADMIN, ADMIN_KEY, demo_catalog

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def catalog(client: Any) -> None:
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200


def make_key(client: Any, role: str, customer: str | None = None) -> tuple[str, str]:
    body: dict[str, Any] = {"role": role}
    if customer:
        body["customer"] = customer
    made = client.post("/v1/keys", json=body)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


@pytest.fixture
def browser(app: Any) -> Any:
    with TestClient(app, follow_redirects=False) as c:  # no key header: a browser
        yield c


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(browser: Any, key: str, nxt: str | None = None) -> Any:
    form = browser.get("/")
    assert form.status_code == 200
    data = {"csrf": csrf_of(form.text), "key": key}
    if nxt:
        data["next"] = nxt
    return browser.post("/", data=data)


def test_an_admin_signs_in_with_a_signed_httponly_strict_cookie_and_lands_on_the_customers(
    browser: Any,
) -> None:
    signed = sign_in(browser, ADMIN_KEY)
    assert signed.status_code == 303 and signed.headers["location"] == "/console/customers"
    cookie = next(
        v for k, v in signed.headers.multi_items() if k == "set-cookie" and "qm_console=" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert ADMIN_KEY not in cookie  # the key is posted once, never kept in the cookie
    page = browser.get("/console/customers")
    assert page.status_code == 200 and "acme" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert browser.get("/").headers["location"] == "/console/customers"  # signed in already


def test_a_customer_key_sees_its_own_organization_only(client: Any, browser: Any) -> None:
    _, key = make_key(client, "customer", "acme")
    signed = sign_in(browser, key)
    assert signed.headers["location"] == "/console/customers/acme"
    assert browser.get("/console/customers/acme").status_code == 200
    other = browser.get("/console/customers/northwind")
    assert other.status_code == 404 and "northwind" in other.text
    # the same answer as for a customer that does not exist: nothing learned
    assert browser.get("/console/customers/nobody").status_code == 404
    assert browser.get("/console/customers").status_code == 403  # the operators' list


def test_an_ingest_key_cannot_sign_in_and_a_wrong_key_is_refused(client: Any, browser: Any) -> None:
    _, ingest = make_key(client, "ingest")
    refused = sign_in(browser, ingest)
    assert refused.status_code == 403 and "cannot sign in" in refused.text
    assert "qm_console=" not in refused.headers.get("set-cookie", "")
    wrong = sign_in(browser, "qm_not_a_key")
    assert wrong.status_code == 401 and "unknown or has been revoked" in wrong.text
    empty = sign_in(browser, "  ")
    assert empty.status_code == 422


def test_a_sign_in_without_the_forms_token_is_refused(browser: Any) -> None:
    browser.get("/")
    forged = browser.post("/", data={"csrf": "made-up", "key": ADMIN_KEY})
    assert forged.status_code == 403 and "qm_console=" not in forged.headers.get("set-cookie", "")
    browser.cookies.clear()
    assert browser.post("/", data={"key": ADMIN_KEY}).status_code == 403


def test_pages_need_a_session_and_send_back_to_sign_in_then_on_to_the_page(browser: Any) -> None:
    away = browser.get("/console/customers/acme")
    assert away.status_code == 303 and away.headers["location"] == "/?next=/console/customers/acme"
    form = browser.get(away.headers["location"])
    assert 'name="next" value="/console/customers/acme"' in form.text
    signed = browser.post(
        "/", data={"csrf": csrf_of(form.text), "key": ADMIN_KEY, "next": "/console/customers/acme"}
    )
    assert signed.headers["location"] == "/console/customers/acme"
    browser.cookies.clear()
    # never on to another site
    elsewhere = sign_in(browser, ADMIN_KEY, nxt="//evil.example/console/")
    assert elsewhere.headers["location"] == "/console/customers"


def test_a_tampered_cookie_is_no_session(browser: Any) -> None:
    sign_in(browser, ADMIN_KEY)
    value = browser.cookies.get("qm_console")
    browser.cookies.set("qm_console", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert browser.get("/console/customers").status_code == 303


def test_sign_out_ends_the_session_and_needs_the_sessions_token(browser: Any) -> None:
    sign_in(browser, ADMIN_KEY)
    page = browser.get("/console/logout")
    assert page.status_code == 200
    assert browser.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
    assert browser.get("/console/customers").status_code == 200  # still signed in
    out = browser.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert browser.get("/console/customers").status_code == 303


def test_a_revoked_key_ends_its_sessions(client: Any, browser: Any) -> None:
    key_id, key = make_key(client, "customer", "acme")
    sign_in(browser, key)
    assert browser.get("/console/customers/acme").status_code == 200
    assert client.delete(f"/v1/keys/{key_id}").status_code == 200
    assert browser.get("/console/customers/acme").status_code == 303


def test_a_session_ends_after_its_lifetime_on_the_services_clock(browser: Any, clock: Any) -> None:
    sign_in(browser, ADMIN_KEY)
    clock.now += timedelta(hours=11, minutes=59)
    assert browser.get("/console/customers").status_code == 200
    clock.now += timedelta(minutes=2)
    assert browser.get("/console/customers").status_code == 303


def test_the_api_still_answers_json_and_the_console_static_files_are_served(client: Any) -> None:
    assert client.get("/v1/customers/acme", headers=ADMIN).status_code == 200
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and "--included" in css.text
