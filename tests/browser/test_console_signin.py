"""The console in Chromium on the demo's data: signing in with each role, and each role's
reach."""

from __future__ import annotations

from typing import Any

import httpx

from support import ADMIN, DemoConsole, sign_in_page


def test_an_admin_and_an_org_admin_sign_in_and_an_ingest_key_is_told_why_not(
    demo_console: DemoConsole, chromium: Any
) -> None:
    url = demo_console.url
    made = httpx.post(f"{url}/v1/keys", headers=ADMIN, json={"role": "ingest"})
    assert made.status_code == 201, made.text
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in_page(page, url, demo_console.admin_key)
        assert page.url == f"{url}/console/customers"
        assert page.get_by_role("link", name="northwind").count() == 1  # every customer
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{url}/")

        sign_in_page(page, url, demo_console.keys["acme"])
        assert page.url == f"{url}/console/customers/acme"
        assert page.get_by_role("heading", level=1).inner_text().startswith("acme")
        assert page.get_by_role("heading", name="Actions").count() == 0  # an admin's only
        assert page.goto(f"{url}/console/customers/northwind").status == 404
        assert page.goto(f"{url}/console/customers").status == 403
        page.goto(f"{url}/console/logout")
        page.get_by_role("button", name="Sign out").last.click()
        page.wait_for_url(f"{url}/")

        page.get_by_label("API key").fill(made.json()["key"])
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        assert "cannot sign in" in alert.inner_text()
        assert page.url == f"{url}/"
        assert not [c for c in context.cookies() if c["name"] == "qm_console"]
    finally:
        context.close()
