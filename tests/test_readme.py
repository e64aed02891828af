"""The README's two commands, as written: the demo starts, answers a balance, stops; CI runs
exactly the test command."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from support import free_port

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(
        r"## The two commands.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "README: no '## The two commands' section with a sh block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    demo, test = readme_commands()
    assert demo == "python3 dev.py demo"
    assert test == "python3 dev.py test"
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ci[-1] == f"exec {test}", ci


def test_the_demo_table_in_the_readme_is_what_its_pinned_run_prints(tmp_path: Path) -> None:
    """The sample in "The demo" names the run it comes from; that run prints it, line for line."""
    section = re.search(r"### The demo\n(.*?)\n## ", (ROOT / "README.md").read_text(), re.S)
    assert section, "README: no '### The demo' section"
    sample = re.search(
        r"`quotameter demo --now (\S+) --no-serve`[^`]*```\n(.*?)```", section.group(1), re.S
    )
    assert sample, (
        "README: the demo's sample table does not follow the `quotameter demo --now … --no-serve` "
        "it is from"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAMETER_")}
    env["COLUMNS"] = "240"  # a terminal wide enough for one line per organization
    done = subprocess.run(
        [sys.executable, "-m", "quotameter.cli", "demo", "--now", sample.group(1), "--no-serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    shown = [line.rstrip() for line in sample.group(2).splitlines()]
    assert len(printed) == len(shown), done.stdout
    for got, expected in zip(printed, shown, strict=True):
        # Every run makes new keys: the README writes each as `qm_…`.
        wanted = re.escape(expected).replace("qm_…", r"qm_[\w-]+")
        assert re.fullmatch(wanted, got), (expected, done.stdout)
    assert printed[0].startswith("Console: not served (--no-serve)"), printed[0]


def test_the_demo_command_starts_answers_a_balance_and_stops(tmp_path: Path) -> None:
    demo = readme_commands()[0].split()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAMETER_")}
    env["QUOTAMETER_PORT"] = str(port)
    # As written, from a directory of the user's: `python3` here is the interpreter running
    # the tests (a fresh machine's python3 would do the same through dev.py).
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / demo[1]), *demo[2:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # its own words tell when it is up; no sleeping
            output.append(line)
            if "Application startup complete" in line:
                break
        text = "".join(output)
        assert proc.poll() is None, text
        admin = re.search(r"admin key: (qm_\S+)", text)
        acme = re.search(r"acme's customer key: (qm_\S+)", text)
        assert admin and acme, text
        # Its printout (stdout) starts with the console's address and who signs in with which
        # key, then the keys (before them: only what dev.py and the stderr status lines say).
        first = f"Console: http://127.0.0.1:{port}/ — sign in with the admin key, or with acme's "
        first += "key to see acme as its admin\nadmin key: qm_"
        assert f"\n{first}" in text or text.startswith(first), text
        assert "events, " not in text.partition(first)[0], text  # before the table
        assert f"http://127.0.0.1:{port}/docs" in text and "curl -s" in text  # what to open and try
        assert re.search(r"northwind\s+basic\s+media\s+blocked", text), text

        url = f"http://127.0.0.1:{port}"
        mine = httpx.get(
            f"{url}/v1/customers/acme/entitlements/media",
            headers={"Authorization": f"Bearer {acme.group(1)}"},
        )
        assert mine.status_code == 200, mine.text
        b = mine.json()
        assert b["has_access"] is True and 0 < float(b["usage"]) < float(b["limit"])
        blocked = httpx.get(
            f"{url}/v1/customers/northwind/entitlements/media",
            headers={"Authorization": f"Bearer {admin.group(1)}"},
        ).json()
        assert blocked["has_access"] is False and float(blocked["remaining"]) == 0
        refused = httpx.get(
            f"{url}/v1/customers/northwind/entitlements/media",
            headers={"Authorization": f"Bearer {acme.group(1)}"},
        )
        assert refused.status_code == 403
        assert (tmp_path / "quotameter-demo.sqlite3").exists()  # in the user's directory
        tries = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
        assert len(tries) >= 6, text
        for line in tries:  # every command the demo suggests works as printed
            response, expected = as_printed(line)
            assert response.status_code == expected, (line, response.text)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(output) + rest
    assert "Shutting down" in rest or "Finished server process" in rest, rest


def as_printed(line: str) -> tuple[httpx.Response, int]:
    """Send what a `curl` line of the demo's "Try" list sends; the status it should get
    (403 where the line says so). A stream is asked to end at once (`max_seconds=0`)."""
    command, _, comment = line.partition("   # ")
    args = iter(shlex.split(command)[1:])
    method, headers, body, url = "GET", {}, None, ""
    for arg in args:
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-X":
            method = next(args)
        elif arg == "-d":
            body = next(args)
        elif not arg.startswith("-"):
            url = arg
    params = {"max_seconds": "0"} if url.endswith("/stream") else None
    response = httpx.request(method, url, headers=headers, content=body, params=params, timeout=30)
    return response, 403 if comment.startswith("403") else (
        201 if method == "POST" and "/topups" in url else 200
    )
