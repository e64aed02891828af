"""A level crossed at a period's last microsecond: the next period is still looked at.

The crossing is evaluated there and the feature's wake-up computed from that instant, when
usage no longer moves within the period although an open stream runs into the next one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.notifications import scheduler
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import notices
from quotameter.timeutil import to_us
from quotameter.usecases.catalog import apply as apply_catalog
from quotameter.usecases.record import ingest
from support import at, iso

APRIL = at("2026-04-01T00:00:00Z")
CATALOG = {
    "meters": {
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "unit": "second",
        }
    },
    "plans": {
        "p": {
            "entitlements": {
                "media": {
                    "meter": "media",
                    "allowance": {"fixed": 20},
                    "notify": {"percent_used": [50], "recipients": "admins"},
                }
            }
        }
    },
    "customers": {"c": {"plan": "p", "admins": ["ops@c.example"]}},
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_crossing_at_the_last_instant_of_a_period_looks_at_the_next(engine: Engine) -> None:
    start = APRIL - timedelta(seconds=10, microseconds=1)  # 50 % at April's first instant - 1 µs
    with unit_of_work(engine) as conn:
        apply_catalog(conn, CATALOG, catalogs.EMPTY, 0)
    cache, clock = catalogs.CatalogCache(), Clock(start)
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "s",
        "type": "m",
        "subject": "c",
        "time": iso(start),
        "data": {"stream": "mic", "action": "start"},
    }
    with unit_of_work(engine) as conn:
        assert ingest(Context(conn, cache.current(conn)), [event], to_us(start)).rejected == []
    scheduler.tick(engine, cache, clock)
    clock.now = APRIL + timedelta(minutes=1)
    scheduler.tick(engine, cache, clock)
    with engine.connect() as conn:
        told = sorted(
            conn.execute(
                select(notices.c.at_us).where(notices.c.type == "usage.threshold")
            ).scalars()
        )
    assert told == [to_us(APRIL) - 1, to_us(APRIL + timedelta(seconds=10))]
