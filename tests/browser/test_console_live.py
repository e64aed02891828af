"""The organization page's live banner and admin actions in Chromium, on the demo's month:
northwind used all of its media minutes, so its page says media is blocked; an admin buys a
top-up block from northwind's page with the keyboard alone, through the review page; the
page northwind's own admin has open loses its banner at once, without a reload."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from support import DemoConsole, sign_in_page

MAX_TABS = 80  # far more stops than the page has: a missing control fails, never loops


def tab_to(page: Any, name: str) -> None:
    """Press Tab until the focused control is the one called `name`."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => (document.activeElement.innerText || document.activeElement.value || '').trim()"
        )
        if focused == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def focus_is_visible(page: Any) -> bool:
    return bool(
        page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle !== 'none'")
    )


def test_a_top_up_bought_by_keyboard_lifts_the_banner_of_an_open_page_without_reload(
    demo_console: DemoConsole, chromium: Any
) -> None:
    url = demo_console.url
    northwind = f"{url}/console/customers/northwind"
    theirs = chromium.new_context()
    ours = chromium.new_context()
    try:
        org = theirs.new_page()
        sign_in_page(org, url, demo_console.keys["northwind"])
        assert org.url == northwind
        banner = org.get_by_role("alert")
        expect(banner).to_be_visible()
        expect(banner).to_have_text(
            "media is blocked: 2,000 of 2,000 minutes used. "
            "Members cannot use it until a top-up or the next period."
        )
        expect(org.locator("#live-banner[data-listening=true]")).to_have_count(1)
        expect(org.get_by_role("button", name="Review top-up")).to_have_count(0)  # not an admin

        admin = ours.new_page()
        sign_in_page(admin, url, demo_console.admin_key)
        admin.goto(northwind)
        expect(admin.get_by_role("alert")).to_be_visible()
        tab_to(admin, "Review top-up")
        assert focus_is_visible(admin)
        admin.keyboard.press("Enter")
        admin.wait_for_url(f"{northwind}/actions/topup")
        expect(admin.locator(".what")).to_have_text(
            "Buy media: 1 block of 1,000 minutes for $5.00."
        )
        tab_to(admin, "Confirm")
        assert focus_is_visible(admin)
        admin.keyboard.press("Space")
        admin.wait_for_url(f"{northwind}?done=topup&feature=media")
        expect(admin.get_by_role("status")).to_have_text(
            "Top-up of media bought: it counts at once."
        )
        expect(admin.locator("#live-banner")).to_be_hidden()

        # The page open all along hears the restore and hides its banner: no reload.
        expect(org.locator("#live-banner")).to_be_hidden()
        expect(org.locator("#live-banner li")).to_have_count(0)
        assert org.url == northwind
    finally:
        theirs.close()
        ours.close()
