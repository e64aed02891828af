"""A feature with a level reached and not yet recorded keeps a watch that sends every batch to
an exact evaluation; on a duration meter that watch grows with the streams a batch opens, and
must know the meter's unit to do so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.notifications import scheduler
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import pending_evaluations, watches
from quotameter.timeutil import to_us
from quotameter.usecases.catalog import apply as apply_catalog
from quotameter.usecases.record import ingest
from support import at, iso

T0 = at("2026-03-10T12:00:00Z")
CATALOG = {
    "meters": {
        "media": {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "stream",
            "merge_property": "user",
            "rounding": {"unit_seconds": 60, "mode": "ceil"},
            "unit": "minute",
        }
    },
    "plans": {
        "p": {
            "entitlements": {
                "media": {
                    "meter": "media",
                    "allowance": {"fixed": 10},
                    "enforcement": "hard",
                    "notify": {"percent_used": [50], "recipients": "admins"},
                }
            }
        }
    },
    "customers": {"a": {"plan": "p", "admins": ["ops@a.example"]}},
}


def media(n: int, stream: str, action: str, when: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "s",
        "type": "m",
        "subject": "a",
        "time": iso(when),
        "data": {"user": "u1", "stream": stream, "action": action},
    }


def test_a_batch_opening_a_stream_on_a_feature_with_a_level_not_yet_recorded_is_evaluated(
    engine: Engine,
) -> None:
    cache = catalogs.CatalogCache()
    with unit_of_work(engine) as conn:
        apply_catalog(conn, CATALOG, catalogs.EMPTY, 0)
    spoken = [media(1, "mic", "start", T0), media(2, "mic", "stop", T0 + timedelta(minutes=7))]
    now = T0 + timedelta(minutes=8)
    with unit_of_work(engine) as conn:
        ctx = Context(conn, cache.current(conn))
        assert ingest(ctx, spoken, to_us(now)).accepted == 2
        conn.execute(pending_evaluations.delete())
        # Watches written without recording the 50 % level reached (7 of 10 minutes).
        scheduler.refresh_meters(ctx, "a", {"media"}, now)
    with engine.connect() as conn:
        (goal, unit) = conn.execute(select(watches.c.goal, watches.c.unit_us)).one()
    assert (goal, unit) == (0, 60_000_000)
    later = now + timedelta(minutes=1)
    with unit_of_work(engine) as conn:
        ctx = Context(conn, cache.current(conn))
        assert ingest(ctx, [media(3, "cam", "start", later)], to_us(later)).accepted == 1
    with engine.connect() as conn:
        assert conn.execute(select(pending_evaluations.c.customer)).scalars().all() == ["a"]
