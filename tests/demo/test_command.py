"""`quotameter demo` itself, in a process of its own with the machine's zone east or west of
UTC, on the days a month is too young for the story: the clock it picks, the line that says
so, the table it prints and the month it loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from demo_story import assert_the_printout_tells_it, assert_the_story_holds, printed_states
from quotameter.store.engine import make_engine

# The command as a user runs it, except that its clock reads `today` (the edge where it
# reads the real one is replaced, as the tests of the app inject theirs).
AT_TODAY = """
import sys
from datetime import datetime
import quotameter.cli
today = datetime.fromisoformat(sys.argv[1])
quotameter.cli.system_clock = lambda: today
from quotameter.cli import app
app(sys.argv[2:], prog_name="quotameter")
"""


def run_demo(cwd: Path, today: datetime, zone: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAMETER_")}
    env |= {"TZ": zone, "COLUMNS": "240"}  # a terminal wide enough for one line per organization
    done = subprocess.run(
        [sys.executable, "-c", AT_TODAY, today.isoformat(), "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("today", "zone", "shown", "moved"),
    [
        # 00:30 on the 1st, east of UTC: already 09:30 in Tokyo; December is young everywhere.
        (
            datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
            "Asia/Tokyo",
            datetime(2026, 11, 30, 0, 30),
            "1 day back",
        ),
        # 23:30 on the 31st, west of UTC: 15:30 in Los Angeles, but Tokyo's January has begun.
        (
            datetime(2027, 1, 31, 23, 30, tzinfo=UTC),
            "America/Los_Angeles",
            datetime(2027, 1, 30, 23, 30),
            "1 day back",
        ),
    ],
)
def test_the_command_moves_its_clock_back_says_so_and_tells_the_story(
    tmp_path: Path, today: datetime, zone: str, shown: datetime, moved: str
) -> None:
    out = run_demo(tmp_path, today, zone, "--no-serve")
    now = shown.replace(tzinfo=UTC)
    lines = out.splitlines()
    # The console (not served here: the command that would serve it), the keys, then the clock.
    assert lines[0].startswith("Console: not served (--no-serve); `quotameter serve"), out
    assert lines[1].startswith("admin key: qm_") and lines[2].startswith("acme's customer key:")
    assert lines[3].startswith(f"The demo's clock is {moved}") and "--now" in lines[3], out
    assert f"up to {now:%d %b %Y %H:%M} UTC" in out, out
    assert_the_printout_tells_it(printed_states(out))

    engine = make_engine(f"sqlite:///{tmp_path / 'quotameter-demo.sqlite3'}")
    try:
        assert_the_story_holds(engine, now)
    finally:
        engine.dispose()


def test_not_served_it_names_the_command_that_serves_its_database_where_it_was_asked(
    tmp_path: Path,
) -> None:
    out = run_demo(
        tmp_path,
        datetime(2026, 11, 20, 15, 0, tzinfo=UTC),
        "UTC",
        "--no-serve",
        "--database",
        "other.sqlite3",
        "--port",
        "9123",
    )
    assert out.splitlines()[0] == (
        "Console: not served (--no-serve); `quotameter serve --database-url "
        "sqlite:///other.sqlite3 --port 9123` would serve it at http://127.0.0.1:9123/ — sign in "
        "with the admin key, or with acme's key to see acme as its admin"
    ), out
    assert (tmp_path / "other.sqlite3").exists()
