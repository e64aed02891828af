"""The console at phone width (375 × 740) in Chromium, on the demo's month: no sideways
scrolling, a header that wraps, touch targets at least 44 px high; and what a keyboard and a
screen reader need on every page (skip link, labels, a visible focus, the header's contrast)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support import DemoConsole, sign_in_page

PHONE = {"width": 375, "height": 740}
TOUCH = 44  # px: the smallest touch target

# Every visible form control (a checkbox or radio is measured by its label), and the header's
# links.
CONTROLS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, .top a')]
  .filter(e => e.getClientRects().length > 0)
  .map(e => {
    const small = e.matches('input[type=checkbox], input[type=radio]');
    const target = small ? (e.closest('label') || (e.labels && e.labels[0]) || e) : e;
    const box = target.getBoundingClientRect();
    return {what: e.outerHTML.slice(0, 80), height: box.height, right: box.right};
  })"""


@pytest.fixture
def phone(demo_console: DemoConsole, chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def assert_fits_a_phone(page: Any) -> None:
    where = page.url
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (where, width)
    controls = page.evaluate(CONTROLS)
    assert controls, where
    for c in controls:
        assert c["height"] >= TOUCH, (where, c)
        assert c["right"] <= PHONE["width"], (where, c)


def header_rows(page: Any) -> int:
    """How many rows the header's parts are laid out on."""
    tops = page.evaluate(
        "() => [...document.querySelectorAll('.top > *')]"
        ".map(e => Math.round(e.getBoundingClientRect().top))"
    )
    return len(set(tops))


def test_sign_in_the_customers_and_acmes_page_fit_a_phone(
    demo_console: DemoConsole, phone: Any
) -> None:
    url = demo_console.url
    phone.goto(f"{url}/")
    assert_fits_a_phone(phone)

    sign_in_page(phone, url, demo_console.admin_key)
    assert phone.url == f"{url}/console/customers"
    assert_fits_a_phone(phone)
    assert header_rows(phone) >= 2  # brand and nav, then who is signed in and "Sign out"
    assert phone.get_by_role("button", name="Sign out").is_visible()

    phone.goto(f"{url}/console/customers/acme")
    assert phone.get_by_role("heading", level=1).inner_text().startswith("acme")
    assert_fits_a_phone(phone)
    assert header_rows(phone) >= 2


def test_acmes_own_admin_fits_a_phone_too(demo_console: DemoConsole, phone: Any) -> None:
    sign_in_page(phone, demo_console.url, demo_console.keys["acme"])
    assert phone.url == f"{demo_console.url}/console/customers/acme"
    assert_fits_a_phone(phone)
    assert phone.get_by_text("acme's admin").is_visible()


def test_the_skip_link_labels_focus_and_the_headers_contrast(
    demo_console: DemoConsole, chromium: Any
) -> None:
    url = demo_console.url
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{url}/")
        key = page.get_by_label("API key")  # the field is named by its label
        assert "admin key sees every customer" in str(
            page.evaluate(
                "() => document.getElementById("
                "document.getElementById('key').getAttribute('aria-describedby').split(' ').pop()"
                ").textContent"
            )
        )
        # The key field has the focus on arrival: the browser applies `autofocus` at its next
        # rendering update, which may come just after the page's load event.
        page.wait_for_function(
            "document.activeElement && document.activeElement.id === 'key'", timeout=5000
        )
        assert_focus_ring(page, "#key")
        key.fill(demo_console.admin_key)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{url}/console/customers")
        assert page.locator(".top nav a[aria-current=page]").inner_text() == "Customers"

        # The first Tab shows the skip link; following it puts the focus on the content.
        page.keyboard.press("Tab")
        skip = page.locator(":focus")
        assert skip.inner_text() == "Skip to content"
        box = skip.bounding_box()
        assert box is not None and box["x"] >= 0 and box["y"] >= 0  # on screen, not off it
        assert_focus_ring(page, ":focus")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        page.keyboard.press("Tab")  # the next stop is in the content, not the header again
        assert page.evaluate("document.activeElement.closest('main') !== null")
        assert_focus_ring(page, ":focus")

        # Text in the header against its background: WCAG AA (4.5:1) at least.
        for part in (".brand", ".top nav a", ".signout .who", ".signout button"):
            ratio = page.evaluate(CONTRAST, part)
            assert ratio >= 4.5, (part, ratio)
    finally:
        context.close()


def assert_focus_ring(page: Any, selector: str) -> None:
    """The focused element shows a ring of at least 2 px, 3:1 against the page around it."""
    ring = page.evaluate(
        """(sel) => { const s = getComputedStyle(document.querySelector(sel));
           return {style: s.outlineStyle, width: parseFloat(s.outlineWidth),
                   color: s.outlineColor}; }""",
        selector,
    )
    assert ring["style"] != "none" and ring["width"] >= 2, (selector, ring)
    behind = page.evaluate(BEHIND, selector)
    assert page.evaluate(RATIO, [ring["color"], behind]) >= 3, (selector, ring, behind)


# The colour next to an element's focus ring, just outside it on its left (or above it):
# the first opaque background of whatever is drawn there, under the element itself.
BEHIND = """(sel) => { const e = document.querySelector(sel); const r = e.getBoundingClientRect();
  const s = getComputedStyle(e);
  const out = parseFloat(s.outlineOffset || 0) + parseFloat(s.outlineWidth || 0) + 2;
  const [x, y] = r.left - out >= 0 ? [r.left - out, r.top + r.height / 2]
    : [r.left + r.width / 2, Math.max(0, r.top - out)];
  for (let at of document.elementsFromPoint(x, y)) {
    if (at === e || e.contains(at)) continue;
    for (; at; at = at.parentElement) { const b = getComputedStyle(at).backgroundColor;
      if (b && b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent') return b; }
  }
  return 'rgb(255, 255, 255)'; }"""

# WCAG's contrast ratio of two CSS rgb() colours.
RATIO = """([a, b]) => { const lum = (c) => { const [r, g, bl] = c.match(/[\\d.]+/g).slice(0, 3)
    .map(Number).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92
      : Math.pow((v + 0.055) / 1.055, 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl; };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); }"""

# An element's text against the first opaque background at or above it.
CONTRAST = (
    "(sel) => { const e = document.querySelector(sel); let bg = 'rgb(255, 255, 255)';"
    " for (let at = e; at; at = at.parentElement) { const b = getComputedStyle(at)"
    ".backgroundColor; if (b && b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent') { bg = b;"
    " break; } }"
    f" return ({RATIO})([getComputedStyle(e).color, bg]); }}"
)
