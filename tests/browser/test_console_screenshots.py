"""The README's two pictures of the console, taken in Chromium from the demo's month.

With QUOTAMETER_WRITE_SCREENSHOTS=1 the test (re)writes docs/images/console-customers.png and
docs/images/console-organization.png from today's pages (the command is in docs/console.md);
otherwise it checks that the pages render and that the README shows both files, which exist.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from support import DemoConsole, sign_in_page

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
DESKTOP = {"width": 1280, "height": 900}
PNG = b"\x89PNG\r\n\x1a\n"

# (the file, the page, the heading that says it rendered)
SHOTS = [
    ("console-customers.png", "/console/customers", "Customers"),
    ("console-organization.png", "/console/customers/acme", "acme"),
]


def test_the_readme_pictures_are_the_customers_list_and_acmes_page_from_the_demo(
    demo_console: DemoConsole, chromium: Any
) -> None:
    write = os.environ.get("QUOTAMETER_WRITE_SCREENSHOTS") == "1"
    context = chromium.new_context(viewport=DESKTOP, device_scale_factor=1)
    try:
        page = context.new_page()
        sign_in_page(page, demo_console.url, demo_console.admin_key)
        for name, path, heading in SHOTS:
            answer = page.goto(f"{demo_console.url}{path}")
            assert answer is not None and answer.status == 200, path
            h1 = page.get_by_role("heading", level=1)
            assert heading in h1.inner_text(), (path, h1.inner_text())
            assert page.locator("main").inner_text().strip(), path  # not an empty page
            if write:
                IMAGES.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(IMAGES / name), full_page=True)
    finally:
        context.close()

    readme = (ROOT / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]+\]\((docs/images/[^)]+\.png)\)", readme)
    for name, _, _ in SHOTS:
        assert f"docs/images/{name}" in shown, f"README does not show docs/images/{name}"
        picture = (IMAGES / name).read_bytes()
        assert picture.startswith(PNG), name
        width = int.from_bytes(picture[16:20], "big")  # the IHDR chunk: width, then height
        assert width == DESKTOP["width"], (name, width)
