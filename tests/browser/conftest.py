"""Pages in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`python3 dev.py test` installs Chromium with apt-get where it may (root on Debian). Without
it these tests are skipped and say why; with CI=true they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import DEMO_NOW, DemoConsole

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


# --- the console on the demo's data (helpers in support: DemoConsole, sign_in_page) ---


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The demo's month loaded once (SQLite), with a customer key per organization."""
    from quotameter.demo.load import load_demo
    from quotameter.keys import service as keys
    from quotameter.store.engine import make_engine, unit_of_work
    from quotameter.store.migrate import upgrade
    from quotameter.timeutil import to_us

    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        summary = load_demo(engine, DEMO_NOW)
        made: dict[str, str] = {}
        with unit_of_work(engine) as conn:
            for org in summary.organizations:
                _, made[org.customer] = keys.create(
                    conn, "customer", org.customer, "browser tests", to_us(DEMO_NOW), {org.customer}
                )
    finally:
        engine.dispose()
    return path, made


@pytest.fixture
def demo_console(
    demo_template: tuple[Path, dict[str, str]], tmp_path: Path
) -> Iterator[DemoConsole]:
    """A copy of the demo's database served on a free port, its clock pinned at DEMO_NOW:
    each test may act on it (buy a top-up, …) without disturbing the others."""
    from conftest import Clock
    from support import ADMIN_KEY, DemoConsole, running

    source, made = demo_template
    copy = tmp_path / "demo.sqlite3"
    shutil.copyfile(source, copy)
    clock = Clock(DEMO_NOW)
    with running(f"sqlite:///{copy}", clock) as (app, _server, url):
        yield DemoConsole(url, app, clock, ADMIN_KEY, made)
