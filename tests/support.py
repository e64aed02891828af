"""Helpers for tests: the demo catalog, and events built by name."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import yaml

_ids = itertools.count(1)

# The admin key every test app and test server is started with (QUOTAMETER_ADMIN_KEY).
ADMIN_KEY = "qm_test_admin_key_for_the_suite_only"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def demo_catalog(**extra_customers: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    doc["customers"].update(extra_customers)
    for cust in doc["customers"].values():
        if "billing_anchor" in cust:
            cust["billing_anchor"] = str(cust["billing_anchor"])
    return doc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def event(type_: str, subject: str, time: datetime | str | None, source: str = "test", **data: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"specversion": "1.0", "id": f"e{next(_ids)}", "source": source, "type": type_,
                          "subject": subject, "data": data}
    if time is not None:
        ev["time"] = time if isinstance(time, str) else iso(time)
    return ev


def stream(type_: str, subject: str, start: datetime, end: datetime | None, **data: Any) -> list[dict[str, Any]]:
    """A start event, and a stop event when `end` is given."""
    out = [event(type_, subject, start, action="start", **data)]
    if end is not None:
        out.append(event(type_, subject, end, action="stop", **data))
    return out


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`quotameter serve` in its own process; `url` once it said it is up."""

    def __init__(self, database_url: str | None, cwd: str, **env: str) -> None:
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "QUOTAMETER_PORT": str(self.port), "QUOTAMETER_SCHEDULER": "false",
                   "QUOTAMETER_ADMIN_KEY": ADMIN_KEY, **env}
        environ.pop("QUOTAMETER_DATABASE_URL", None)
        if database_url:
            environ["QUOTAMETER_DATABASE_URL"] = database_url
        self.proc = subprocess.Popen([sys.executable, "-m", "quotameter.cli", "serve"], cwd=cwd, env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []

    def wait_ready(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the process's own words; no sleeping
            self.output.append(line)
            if "Application startup complete" in line:
                return "".join(self.output)
        raise AssertionError("server exited before it was ready:\n" + "".join(self.output))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
