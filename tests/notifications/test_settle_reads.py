"""What settling one customer reads, counted in statements.

On PostgreSQL every statement of an evaluation is a round trip, and the scheduler settles
customers while a live feed writes. Settling a customer whose usage moved reads its view
(settings and the plan in force) once for the instant evaluated, whatever number of its
features is evaluated and watched, and its change counter twice: before any usage, and once
everything is written, to find a write that came in between. A feature that needs a look at
its next period reads the view at that period's start too: one more. Notices recorded may
have changed the plan: the view and the counter are then read again, once.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import Engine

from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.notifications import scheduler
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases.catalog import apply as apply_catalog
from quotameter.usecases.record import ingest
from support import at, iso, statements

NOW = at("2026-04-15T12:00:00Z")
CATALOG = {
    "meters": {
        "calls": {"event_type": "call", "aggregation": "count"},
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "unit": "second",
        },
    },
    "plans": {
        "p": {
            "entitlements": {
                "calls": {
                    "meter": "calls",
                    "allowance": {"fixed": 10},
                    "notify": {"percent_used": [50, 90], "recipients": "admins"},
                },
                "media": {
                    "meter": "media",
                    "allowance": {"fixed": 600},
                    "enforcement": "hard",
                    "notify": {"percent_used": [80], "recipients": "admins"},
                },
            }
        }
    },
    "customers": {"c": {"plan": "p", "admins": ["ops@c.example"]}},
}


def _event(n: int, kind: str, when: datetime, **data: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "s",
        "type": kind,
        "subject": "c",
        "time": iso(when),
        "data": data,
    }


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("started", "stopped", "views", "counters"),
    [
        # 10 % of each: nothing recorded. The open stream moves usage, so only the count
        # meter's next period is looked at: the view at `now`, then at May's start.
        ("11:59:00", None, 2, 2),
        # Nothing moves within April any more: both features look at May's start (one view
        # read each; a balance is read per feature).
        ("11:58:00", "11:59:00", 3, 2),
        # The stream has run 10 minutes: 100 % of the media minutes, notices recorded. They
        # may have changed the plan: the evaluation reads the view again, and the watches are
        # written from a fresh counter and view (each serving every feature), then May's.
        ("11:50:00", None, 4, 3),
    ],
)
def test_settling_a_customer_reads_its_view_and_counter_once_for_each_use(
    engine: Engine, started: str, stopped: str | None, views: int, counters: int
) -> None:
    with unit_of_work(engine) as conn:
        apply_catalog(conn, CATALOG, catalogs.EMPTY, 0)
    cache = catalogs.CatalogCache()
    events = [
        _event(1, "call", NOW),
        _event(2, "m", at(f"2026-04-15T{started}Z"), stream="mic", action="start"),
    ]
    if stopped is not None:
        events.append(_event(3, "m", at(f"2026-04-15T{stopped}Z"), stream="mic", action="stop"))
    with unit_of_work(engine) as conn:
        ctx = Context(conn, cache.current(conn))
        assert ingest(ctx, events, to_us(NOW)).rejected == []
        scheduler.note_batch(ctx, {}, ["c"], to_us(NOW))  # no watch yet: marked pending
    with statements(engine) as seen:
        assert scheduler.tick(engine, cache, lambda: NOW) == 1
    reads = Counter(
        table
        for statement in seen
        for table in ("customer_settings", "customer_state")
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table} " in statement
    )
    assert dict(reads) == {"customer_settings": views, "customer_state": counters}
