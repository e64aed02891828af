"""The same scenario on SQLite and on PostgreSQL answers the same JSON, byte for byte: every
number read back from the database (gauge levels, sums, grants, notice percents, invoice
totals) is written alike, whatever each database keeps it as."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conftest import Clock
from quotameter.invoices.service import finalize_due
from quotameter.notifications import scheduler
from quotameter.server import create_app
from quotameter.settings import Settings
from quotameter.store.tables import metadata
from support import ADMIN, ADMIN_KEY, at, demo_catalog, event

SUMS = {"event_type": "upload.done", "aggregation": "sum", "value_property": "gb", "unit": "GB"}
LEVELS = {"event_type": "disk.level", "aggregation": "gauge", "value_property": "gb", "unit": "GB"}


def catalog() -> dict[str, Any]:
    doc = demo_catalog()
    doc["meters"].update(uploads=SUMS, disk=LEVELS)
    doc["plans"]["storage"] = {
        "entitlements": {
            "uploads": {
                "meter": "uploads",
                "allowance": {"fixed": "10.5"},
                "notify": {"percent_used": [50]},
                "enforcement": "overage",
                "overage_limit": "1000",
            },
            "disk": {
                "meter": "disk",
                "allowance": {"fixed": 2000},
                "enforcement": "soft",
                "slack": "0.25",
            },
        },
        "prices": [
            {"type": "overage", "feature": "uploads", "unit_price": "0.10"},
            {"type": "unit", "feature": "disk", "unit_price": "0.001"},
        ],
    }
    doc["customers"]["vault"] = {"plan": "storage", "admins": ["ops@vault.example"]}
    return doc


@pytest.fixture
def both(
    tmp_path: Path, sqlite_template: Path, pg_url: str
) -> Iterator[dict[str, tuple[TestClient, Clock]]]:
    import shutil

    path = tmp_path / "same.sqlite3"
    shutil.copy(sqlite_template, path)
    clients: dict[str, tuple[TestClient, Clock]] = {}
    apps = []
    try:
        for name, url in (("sqlite", f"sqlite:///{path}"), ("postgresql", pg_url)):
            clock = Clock(at("2026-03-10T12:00:00Z"))
            app = create_app(
                Settings(database_url=url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY),
                clock=clock,
            )
            apps.append(app)
            client = TestClient(app, headers=ADMIN)
            client.__enter__()
            clients[name] = (client, clock)
        yield clients
    finally:
        for client, _ in clients.values():
            client.__exit__(None, None, None)
        for app in apps:
            app.state.services.engine.dispose()
        engine = create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY"
                )
            )
        engine.dispose()


def scenario(client: TestClient, clock: Clock) -> list[tuple[str, str]]:
    """Write the same history, then read it back through every endpoint that shows a number."""
    assert client.put("/v1/catalog", json=catalog()).status_code == 200
    evs = [
        event("media.volume", "studio", at("2026-02-20T00:00:00Z"), source="s", hours_delta=2300),
        event(
            "media.volume", "studio", at("2026-02-21T00:00:00Z"), source="s", hours_delta="-1.50"
        ),
        event("upload.done", "vault", at("2026-03-02T10:00:00Z"), source="s", gb="2.50"),
        event("upload.done", "vault", at("2026-03-02T10:30:00Z"), source="s", gb="3.250"),
        event("upload.done", "vault", at("2026-03-03T09:00:00Z"), source="s", gb=8),
        event("upload.done", "vault", at("2026-03-04T09:00:00Z"), source="s", gb="0.10"),
        event("disk.level", "vault", at("2026-03-02T10:00:00Z"), source="s", gb="2300.000"),
        event("disk.level", "vault", at("2026-03-05T10:00:00Z"), source="s", gb="1250.50"),
    ]
    r = client.post("/v1/events", json=evs)
    assert r.json()["rejected"] == [], r.text
    assert (
        client.post(
            "/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "t1"}
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/v1/customers/vault/grants", json={"feature": "uploads", "amount": "1.50", "id": "g1"}
        ).status_code
        == 201
    )
    svc = client.app.state.services  # type: ignore[attr-defined]
    scheduler.tick(svc.engine, svc.catalogs, clock)
    reads = [
        "/v1/customers/studio/entitlements/managed_media?at=2026-02-22T00:00:00Z",
        "/v1/customers/studio/usage?feature=managed_media&window=day&from=2026-02-19T00:00:00Z&to=2026-02-23T00:00:00Z",
        "/v1/customers/vault/entitlements/uploads",
        "/v1/customers/vault/entitlements/disk",
        "/v1/customers/vault/usage?feature=disk&window=day",
        "/v1/customers/vault/usage?feature=uploads&window=hour&from=2026-03-02T00:00:00Z",
        "/v1/customers/vault/grants",
        "/v1/customers/acme/grants",
        "/v1/customers/acme/entitlements/media",
        "/v1/customers/studio/invoices/upcoming?at=2026-02-22T00:00:00Z",
        "/v1/customers/vault/invoices/upcoming",
    ]
    answers = [(path, read(client, path)) for path in reads]
    clock.now = at("2026-04-02T00:00:00Z")
    assert finalize_due(svc.engine, svc.catalogs, clock()) >= 2
    for path in (
        "/v1/customers/studio/notifications",
        "/v1/customers/vault/notifications",
        "/v1/customers/acme/notifications",
        "/v1/customers/vault/invoices",
        "/v1/customers/studio/invoices",
        "/v1/customers/acme/invoices",
        "/v1/customers/vault/invoices/upcoming?at=2026-03-20T00:00:00Z",
    ):
        answers.append((path, read(client, path)))
    return answers


def read(client: TestClient, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, (path, r.text)
    return r.text  # the text: 2300.000000000000 and 2300 would parse to equal numbers


def test_the_same_history_reads_the_same_on_sqlite_and_postgresql(both) -> None:  # type: ignore[no-untyped-def]
    lite, pg = (scenario(*both[name]) for name in ("sqlite", "postgresql"))
    for (path, on_sqlite), (_, on_postgresql) in zip(lite, pg, strict=True):
        assert on_postgresql == on_sqlite, path
    disk = next(body for path, body in pg if path == "/v1/customers/vault/entitlements/disk")
    assert '"usage":2300,' in disk and '"level":1250.5}' in disk
