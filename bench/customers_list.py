"""The operators' list of customers at 10,000 customers: the time per page.

    .venv/bin/python bench/customers_list.py                  # SQLite and PostgreSQL
    .venv/bin/python bench/customers_list.py --db sqlite --customers 20000 --repeat 50

A fresh database per kind gets a catalog of `--customers` customers (two limited features
each on two plans, a third unlimited) and a standing for every limited feature of every
customer, as the notices' evaluations leave them, spread over every state. Then each page
below is asked `--repeat` times, in process: the use case alone (`overview`, what the
console page calls), and `GET /v1/customers` through the application (JSON included, no
network). The baseline, printed next to them, is the one query that reads every standing.

Pages: the first by name; near_limit by percent; a search; the 100th page by name (its
cursor); and one page of 500. Prints the median and p90 in milliseconds. A measurement, not
a test: the figures depend on the machine (two cores, shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ingest import fresh_database
from quotameter.catalog import service as catalogs
from quotameter.context import Context
from quotameter.notifications import repository as notices
from quotameter.store.engine import make_engine, unit_of_work
from quotameter.store.migrate import upgrade
from quotameter.timeutil import to_us
from quotameter.usecases import catalog as use_catalog
from quotameter.usecases import customers as use_customers
from support import ADMIN, ADMIN_KEY

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PERIOD = (to_us(datetime(2026, 3, 1, tzinfo=UTC)), to_us(datetime(2026, 4, 1, tzinfo=UTC)))
LIMITED = {"meter": "mb", "allowance": {"fixed": 100}, "notify": {"percent_used": [80]}}


def catalog(n: int) -> dict[str, Any]:
    plans = ("hard", "over", "free")
    return {
        "meters": {
            "mb": {"event_type": "upload", "aggregation": "sum", "value_property": "mb"},
            "calls": {"event_type": "call", "aggregation": "count"},
        },
        "plans": {
            "hard": {
                "entitlements": {
                    "storage": {**LIMITED, "enforcement": "hard"},
                    "calls": {**LIMITED, "meter": "calls", "enforcement": "hard"},
                }
            },
            "over": {
                "entitlements": {
                    "storage": {**LIMITED, "enforcement": "overage"},
                    "calls": {**LIMITED, "meter": "calls", "enforcement": "overage"},
                }
            },
            "free": {"entitlements": {"storage": {"meter": "mb", "enforcement": "none"}}},
        },
        "customers": {f"org-{i:05d}": {"plan": plans[i % 3]} for i in range(n)},
    }


def prepare(url: str, n: int) -> Any:
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(engine) as conn:
        use_catalog.apply(conn, catalog(n), catalogs.EMPTY, to_us(NOW))
    with unit_of_work(engine) as conn:
        for i in range(n):
            if i % 3 == 2:
                continue  # unlimited: never evaluated
            for k, feature in enumerate(("storage", "calls")):
                usage = Decimal((i * 37 + k * 11) % 125)
                notices.put_standing(
                    conn,
                    f"org-{i:05d}",
                    feature,
                    period=PERIOD,
                    usage=usage,
                    limit=Decimal(100),
                    percent=usage,
                    near=usage >= 80,
                    blocked=usage >= 100 and i % 3 == 0,
                    overage=usage > 100,
                    evaluated_us=to_us(NOW),
                )
    return engine


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm: the catalog cache, prepared statements
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    runs.sort()
    return statistics.median(runs), runs[max(0, int(len(runs) * 0.9) - 1)]


def run(kind: str, n: int, repeat: int) -> None:
    from fastapi.testclient import TestClient

    from quotameter.server import create_app
    from quotameter.settings import Settings

    with tempfile.TemporaryDirectory() as work, fresh_database(kind, Path(work), "list") as url:
        started = time.perf_counter()
        engine = prepare(url, n)
        print(f"\n{kind}: {n:,} customers ready in {time.perf_counter() - started:.1f} s")
        cache = catalogs.CatalogCache()

        def page(**params: Any) -> Callable[[], object]:
            def ask() -> object:
                with engine.connect() as conn:
                    ctx = Context(conn, cache.current(conn))
                    return use_customers.overview(ctx, NOW, **params)

            return ask

        with engine.connect() as conn:
            ctx = Context(conn, cache.current(conn))
            cursor: str | None = None
            for _ in range(99):
                cursor = use_customers.overview(ctx, NOW, cursor=cursor).next_cursor
        pages: dict[str, dict[str, Any]] = {
            "first page, by name": {},
            "near_limit, by percent": {"state": "near_limit", "sort": "percent"},
            "search 'org-012'": {"q": "org-012"},
            "100th page, by name": {"cursor": cursor},
            "500 rows, by percent": {"sort": "percent", "limit": 500},
        }

        def baseline() -> object:
            with engine.connect() as conn:
                return conn.execute(text("SELECT * FROM standings")).all()

        app = create_app(
            Settings(database_url=url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY),
            clock=lambda: NOW,
        )
        print(f"{'page':<26}{'overview p50':>14}{'p90':>8}{'GET p50':>10}{'p90':>8}  (ms)")
        base = timed(baseline, repeat)
        print(f"{'baseline: every standing':<26}{base[0]:>14.1f}{base[1]:>8.1f}")
        with TestClient(app, headers=ADMIN) as client:
            for label, params in pages.items():
                mid, p90 = timed(page(**params), repeat)
                query = {k: v for k, v in params.items() if v is not None}

                def get(query: dict[str, Any] = query) -> object:
                    r = client.get("/v1/customers", params=query)
                    assert r.status_code == 200, r.text
                    return r

                http_mid, http_p90 = timed(get, repeat)
                print(f"{label:<26}{mid:>14.1f}{p90:>8.1f}{http_mid:>10.1f}{http_p90:>8.1f}")
        app.state.services.engine.dispose()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    for kind in kinds:
        run(kind, args.customers, args.repeat)


if __name__ == "__main__":
    main()
