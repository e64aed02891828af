"""Pages in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`python3 dev.py test` installs Chromium with apt-get where it may (root on Debian). Without
it these tests are skipped and say why; with CI=true they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

# As root on a machine with a closed network: no sandbox, and nothing in the background
# trying to reach Google's hosts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("QUOTAMETER_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        reason = (
            "no Chromium: install Debian's `chromium` (python3 dev.py test does, as root) "
            "or set QUOTAMETER_TEST_CHROMIUM to its path"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:  # Playwright gives the browser a new, empty profile
        browser = pw.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
