"""The console in Chromium on the demo's data: signing in with each role."""

from __future__ import annotations

from typing import Any

from support import DemoConsole, sign_in_page


def test_an_admin_and_an_org_admin_sign_in_and_an_ingest_key_is_told_why_not(
    demo_console: DemoConsole, chromium: Any
) -> None:
    url = demo_console.url
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in_page(page, url, demo_console.admin_key)
        assert page.url == f"{url}/console/customers"
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{url}/")
        sign_in_page(page, url, demo_console.keys["acme"])
        assert page.url == f"{url}/console/customers/acme"
        assert page.goto(f"{url}/console/customers/northwind").status == 404
    finally:
        context.close()
