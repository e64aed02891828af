"""The demo's story, checked where it is told: in the database, through the balance and
notice services, and in the table the command prints. Shared by the demo's tests, whatever
instant and machine zone they run it at."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, func, select

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.demo.load import SHOWN
from quotameter.entitlements.service import balance
from quotameter.meters import repository as meter_state
from quotameter.notifications import repository as notices
from quotameter.notifications.service import as_dict
from quotameter.store import tables
from quotameter.timeutil import to_us

# What each organization's printed state begins with (kestrel's also names its block).
STATES = {
    "acme": "near its limit: ",
    "brightline": "comfortably under: ",
    "northwind": "blocked: 100 % of 2,000 minutes used; members told in-app",
    "kestrel": "comfortably under: ",
    "orbit": "no limit: ",
    "studio": "in overage: peaked at 30.25 of 25 hours",
    "docs": "auto-upgraded from sessions_100k on ",
    "callco": "no limit: ",
}


def standings(engine: Engine, at: datetime) -> dict[tuple[str, str], dict[str, object]]:
    with engine.connect() as conn:
        catalog = CatalogCache().current(conn)
        return {(c, f): balance(Context(conn, catalog), c, f, at).as_dict() for c, f in SHOWN}


def recorded(engine: Engine, customer: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [as_dict(row) for row in notices.listing(conn, customer)]


def latest_stamps(engine: Engine) -> dict[str, int | None]:
    """The latest instant in every column that records when something happened."""
    columns = [
        tables.events.c.time_us,
        tables.events.c.received_us,
        tables.catalogs.c.applied_us,
        tables.notices.c.at_us,
        tables.notices.c.recorded_us,
        tables.fired.c.at_us,
        tables.grants.c.effective_us,
        tables.grants.c.recorded_us,
        tables.seat_changes.c.effective_us,
        tables.seat_changes.c.recorded_us,
        tables.plan_changes.c.effective_us,
        tables.plan_changes.c.recorded_us,
        tables.stream_spans.c.last_us,
        tables.merged_spans.c.end_us,
        tables.gauge_points.c.t_us,
    ]
    with engine.connect() as conn:
        return {
            f"{c.table.name}.{c.name}": conn.execute(select(func.max(c))).scalar() for c in columns
        }


def assert_the_story_holds(
    engine: Engine, now: datetime
) -> dict[tuple[str, str], dict[str, object]]:
    """Every organization is where the demo's printout and its "Try" list say, at `now`; the
    balances, for more checks."""
    b = standings(engine, now)

    near = b[("acme", "media")]
    assert Decimal(85) <= near["usage"] * 100 / near["limit"] < Decimal(95), near
    assert near["granted"] == 250 and near["has_access"], near  # the operator's credit
    assert {(n["type"], n["percent"]) for n in recorded(engine, "acme")} >= {
        ("usage.threshold", 85)
    }

    blocked = b[("northwind", "media")]
    assert blocked["usage"] == blocked["limit"] == 2000, blocked
    assert blocked["remaining"] == 0 and blocked["has_access"] is False
    told = [n for n in recorded(engine, "northwind") if n["type"] == "access.blocked"]
    assert (
        len(told) == 1
        and told[0]["recipients"]["in_app"]
        and len(told[0]["recipients"]["members"]) == 4
    )
    assert told[0]["at"] < now

    topped = b[("kestrel", "media")]
    assert topped["granted"] == 1000 and topped["limit"] == 3500 and topped["has_access"], topped
    kinds = [(n["type"], n["percent"]) for n in recorded(engine, "kestrel")]
    bought = [k for k, (kind, _) in enumerate(kinds) if kind == "topup.applied"]
    assert len(bought) == 1 and ("usage.threshold", 95) in kinds[: bought[0]], (
        kinds
    )  # after the 95 % e-mail

    under = b[("brightline", "media")]
    assert under["included"] == 3000, under  # six seats: one added during the month
    assert under["usage"] * 100 / under["limit"] < 50

    gauge = b[("studio", "managed_media")]
    assert gauge["overage"] > 0 and gauge["usage"] > gauge["limit"], gauge
    assert gauge["level"] < gauge["usage"] and gauge["has_access"]  # the peak is past

    docs = b[("docs", "sessions")]
    assert docs["plan"] == "sessions_200k" and docs["usage"] > 100_000, docs
    upgrade = [n for n in recorded(engine, "docs") if n["type"] == "plan.upgraded"]
    assert len(upgrade) == 1 and upgrade[0]["at"] <= now

    assert b[("orbit", "media")]["limit"] is None and b[("orbit", "media")]["usage"] > 0
    assert b[("callco", "audio_connector")]["limit"] is None

    with engine.connect() as conn:  # streams still running at now: merging and time matter
        for customer, meter in [("acme", "media_minutes"), ("callco", "streaming_minutes")]:
            assert meter_state.open_spans(conn, meter, customer, to_us(now)), customer

    stamps = latest_stamps(engine)
    assert all(v is not None and v <= to_us(now) for v in stamps.values()), stamps
    return b


def printed_states(output: str) -> dict[str, str]:
    """customer -> state, from the table `quotameter demo` prints (one line per organization
    on a wide enough terminal)."""
    rows = (re.match(r"\s*(\w+)\s+(\w+)\s+(\w+)\s+(.+?)\s*$", line) for line in output.splitlines())
    return {m.group(1): m.group(4) for m in rows if m and m.group(1) in dict(SHOWN)}


def assert_the_printout_tells_it(states: dict[str, str]) -> None:
    assert list(states) == [c for c, _ in SHOWN], states
    for customer, start in STATES.items():
        assert states[customer].startswith(start), (customer, states[customer])
    assert states["kestrel"].endswith("; bought 1 top-up block"), states["kestrel"]


@contextmanager
def process_zone(name: str) -> Iterator[None]:
    """Run with the machine's zone set to `name` (what `TZ=name` does to a new process)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
