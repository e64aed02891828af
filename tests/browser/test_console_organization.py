"""The organization page in Chromium on the demo's month: the bar's words are the balance's
numbers, the members add up to the usage, studio's managed volume shows its three colours,
and a phone-sized window never scrolls sideways."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from quotameter.console.formatting import number, quantity
from support import DemoConsole, sign_in_page

# console.css: --included, --used, --maximum
GREEN, BLUE, GREY = "rgb(26, 127, 55)", "rgb(10, 88, 202)", "rgb(175, 184, 193)"


def balances(demo: DemoConsole, customer: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(
        f"{demo.url}/v1/customers/{customer}/entitlements",
        headers={"Authorization": f"Bearer {demo.keys[customer]}"},
    )
    assert r.status_code == 200, r.text
    return {b["feature"]: b for b in r.json()["entitlements"]}


def test_acmes_bar_reads_the_balance_and_its_members_add_up_to_the_usage(
    demo_console: DemoConsole, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in_page(page, demo_console.url, demo_console.keys["acme"])
        assert page.url == f"{demo_console.url}/console/customers/acme"
        media = balances(demo_console, "acme")["media"]
        usage, limit = Decimal(str(media["usage"])), Decimal(str(media["limit"]))
        card = page.locator("#feature-media")
        words = f"{number(usage)} of {quantity(limit, 'minute')}"
        assert card.locator(".reads").inner_text() == words
        bar = card.get_by_role("img", name=words)
        assert bar.count() == 1 and bar.locator("title").first.text_content() == words
        remaining = quantity(Decimal(str(media["remaining"])), "minute")
        assert card.locator(".remaining").inner_text() == remaining
        cells = card.locator("table.org-members tbody td.num")
        values = [Decimal(v) for v in cells.evaluate_all("cs => cs.map(c => c.dataset.value)")]
        assert len(values) > 1 and sum(values) == usage
        total = card.locator("table.org-members tfoot td.num").get_attribute("data-value")
        assert total is not None and Decimal(total) == usage
        # the members sort by name from the keyboard: focus the header's link, press Enter
        card.get_by_role("link", name="User").focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**members=name**")
        names = page.locator("#feature-media table.org-members tbody td:first-child")
        shown = names.all_inner_texts()
        assert shown == sorted(shown, key=str.casefold)
    finally:
        context.close()


def test_studios_managed_volume_in_green_blue_and_grey_on_a_phone_without_sideways_scroll(
    demo_console: DemoConsole, chromium: Any
) -> None:
    context = chromium.new_context(viewport={"width": 375, "height": 812})
    try:
        page = context.new_page()
        sign_in_page(page, demo_console.url, demo_console.keys["studio"])
        managed = balances(demo_console, "studio")["managed_media"]
        card = page.locator("#feature-managed_media")
        fills = {
            kind: card.locator(f"svg.meter-bar rect.seg-{kind}").evaluate(
                "r => getComputedStyle(r).fill"
            )
            for kind in ("included", "used", "maximum")
        }
        assert fills == {"included": GREEN, "used": BLUE, "maximum": GREY}
        usage, limit = Decimal(str(managed["usage"])), Decimal(str(managed["limit"]))
        assert (
            card.locator(".reads").inner_text() == f"{number(usage)} of {quantity(limit, 'hour')}"
        )
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        box = card.locator("svg.meter-bar").bounding_box()
        assert box is not None and 0 < box["width"] <= 375
    finally:
        context.close()
