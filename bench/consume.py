"""Consume of a large amount against a consume of one unit, on a `count` meter.

    .venv/bin/python bench/consume.py [--db sqlite|postgresql|both] [--amount N] [--repeat R]

For each database, a fresh database gets a catalog with one unlimited feature backed by a
`count` meter. The baseline is `POST …/consume` of amount 1 (the request, the locks, the
check and one recorded event); the figure is the same request with amount N. Both run in
process (the app through Starlette's test client), alternately R times, keeping the fastest
of each: load from other processes can only slow a run down. It prints both wall times and
their ratio, and checks that the balance counts exactly what was consumed.

Exit status: 0 whether fast or slow (this is a measurement); 1 when a consume failed or the
balance is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quotameter.server import create_app
from quotameter.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "QUOTAMETER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_KEY = "qm_bench_consume_admin_key"
CATALOG = {
    "meters": {"calls": {"event_type": "api.call", "aggregation": "count", "unit": "call"}},
    "plans": {"open": {"entitlements": {"calls": {"meter": "calls", "enforcement": "none"}}}},
    "customers": {"bench": {"plan": "open"}},
}
PATH = "/v1/customers/bench/entitlements/calls/consume"


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}_consume"
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.sqlite3'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _timed(client: TestClient, request_id: str, amount: int) -> float:
    started = time.perf_counter()
    r = client.post(PATH, json={"id": request_id, "amount": amount})
    elapsed = time.perf_counter() - started
    if r.status_code != 200 or r.json()["duplicate"]:
        raise SystemExit(f"consume {request_id} of {amount}: {r.status_code} {r.text[:300]}")
    return elapsed


def run(kind: str, amount: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(kind, Path(tmp)) as url:
        # A fixed clock mid-month: every consume falls in the same period.
        settings = Settings(database_url=url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY)
        app = create_app(settings, clock=lambda: datetime(2026, 3, 10, 12, tzinfo=UTC))
        with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            assert client.put("/v1/catalog", json=CATALOG).status_code == 200
            _timed(client, "warm-up", 1)
            one, many = [], []
            for k in range(repeat):
                one.append(_timed(client, f"one-{k}", 1))
                many.append(_timed(client, f"many-{k}", amount))
            usage = client.get("/v1/customers/bench/entitlements/calls").json()["usage"]
        app.state.services.engine.dispose()
    expected = 1 + repeat * (1 + amount)
    if usage != expected:
        raise SystemExit(f"{kind}: the balance counts {usage}, expected {expected}")
    best_one, best_many = min(one), min(many)
    print(
        f"{kind:<10} consume of {amount:,}: {best_many * 1000:9.1f} ms   "
        f"consume of 1 (baseline): {best_one * 1000:7.1f} ms   ratio {best_many / best_one:8.1f}x "
        f"  (fastest of {repeat})"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--amount", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for kind in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        run(kind, args.amount, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
