"""How long `quotameter simulate` takes on the demo's month, against the baseline of one
pass over the same customers under the catalog in force alone.

    .venv/bin/python bench/simulate.py [--db sqlite|postgresql]

Loads the demo (about 100,000 events, eight organizations) at a pinned instant into a fresh
database, then simulates a candidate that redefines the media meter (rounding to the second:
the meter is rebuilt from every raw event), cuts the per-seat allowance and prices overage.
Prints the events loaded, the simulation's wall time, the baseline (the same pricing, under
the catalog in force only, without the copy or the rebuild) and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.demo.load import load_demo
from quotameter.demo.month import demo_catalog
from quotameter.store.engine import make_engine
from quotameter.store.migrate import upgrade
from quotameter.usecases import simulate as simulation

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def candidate() -> dict[str, object]:
    doc = demo_catalog()
    doc["meters"]["media_minutes"]["rounding"] = {"unit_seconds": 1, "mode": "ceil"}
    media = doc["plans"]["basic"]["entitlements"]["media"]
    media["allowance"] = {"per_seat": 400}
    media["enforcement"] = "overage"
    doc["plans"]["basic"]["prices"] = [
        {"type": "flat", "amount": "49.00"},
        {"type": "overage", "feature": "media", "unit_price": "0.02"},
    ]
    return doc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.db == "sqlite":
            url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        else:
            admin = create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS bench_simulate"))
                conn.execute(text("CREATE DATABASE bench_simulate"))
            url = PG + "bench_simulate"
        engine = make_engine(url)
        upgrade(engine)
        summary = load_demo(engine, NOW)
        began = time.perf_counter()
        with engine.connect() as conn:
            ctx = Context(conn, CatalogCache().current(conn))
            for name in sorted(ctx.catalog.spec.customers):
                simulation.outcome(ctx, name, None, NOW)
        baseline = time.perf_counter() - began
        began = time.perf_counter()
        found = simulation.simulate(engine, candidate(), NOW)
        took = time.perf_counter() - began
        engine.dispose()
    print(f"database: {args.db}; {summary.events:,} events, {len(found.customers)} customers")
    print(f"simulate: {took:.2f} s")
    print(f"baseline (pricing under the catalog in force only): {baseline:.2f} s")
    print(f"ratio: {took / baseline:.1f}x the baseline")
    for currency, (old, new) in found.totals().items():
        print(f"revenue {currency}: {old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
