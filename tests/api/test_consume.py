"""consume: atomic check-and-record, idempotent, never past a hard limit under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx

from support import ADMIN, ServerProcess, demo_catalog

QUOTA = 25
CATALOG = {
    "meters": {
        "api_calls": {"event_type": "api.call", "aggregation": "count", "filter": {"kind": ["write"]}},
        "gb": {"event_type": "storage", "aggregation": "sum", "value_property": "gb"},
    },
    "plans": {"p": {"entitlements": {
        "calls": {"meter": "api_calls", "allowance": {"fixed": QUOTA}, "enforcement": "hard"},
        "storage": {"meter": "gb", "allowance": {"fixed": 10}, "enforcement": "hard"},
    }}},
    "customers": {"c": {"plan": "p"}, "d": {"plan": "p"}},
}


def consume(client, customer, feature, id_, amount):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/customers/{customer}/entitlements/{feature}/consume", json={"id": id_, "amount": amount})


def test_consume_records_refuses_and_is_idempotent(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    r = consume(client, "c", "storage", "req-1", "7.5")
    assert r.status_code == 200
    assert (r.json()["allowed"], r.json()["duplicate"], Decimal(str(r.json()["usage"]))) == (True, False, Decimal("7.5"))
    again = consume(client, "c", "storage", "req-1", "7.5")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert Decimal(str(again.json()["usage"])) == Decimal("7.5")  # counted once
    refused = consume(client, "c", "storage", "req-2", 3)
    assert refused.status_code == 409
    assert refused.json()["allowed"] is False and "2.5 left" in refused.json()["reason"]
    # A count meter records whole events, carrying its filter so that they are counted.
    assert consume(client, "c", "calls", "n-1", 3).json()["usage"] == 3
    bad = consume(client, "c", "calls", "n-2", "1.5")
    assert bad.status_code == 422 and bad.json()["error"].startswith("amount: meter 'api_calls' counts whole events")
    assert consume(client, "c", "calls", "n-3", 0).status_code == 422


def test_consume_of_a_duration_meter_is_refused_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=demo_catalog())
    r = consume(client, "acme", "media", "x", 1)
    assert r.status_code == 422 and "send its events instead" in r.json()["error"]


def test_parallel_consumers_on_two_server_processes_never_overshoot(db_url: str, tmp_path: Path) -> None:
    servers = [ServerProcess(db_url, str(tmp_path)) for _ in range(2)]
    try:
        for s in servers:
            s.wait_ready()
        clients = [httpx.Client(base_url=s.url, timeout=60, headers=ADMIN) for s in servers]
        assert clients[0].put("/v1/catalog", json=CATALOG).status_code == 200
        requests = [(clients[i % 2], f"r{i}") for i in range(48)]
        requests += [(clients[1], "r0"), (clients[0], "r1"), (clients[1], "r2")]  # repeats of ids
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda cr: consume(cr[0], "c", "calls", cr[1], 1), requests))
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers if a.status_code >= 500]
        granted = {requests[i][1] for i, a in enumerate(answers) if a.status_code == 200 and not a.json()["duplicate"]}
        assert len(granted) == QUOTA
        final = clients[1].get("/v1/customers/c/entitlements/calls").json()
        assert (final["usage"], final["has_access"]) == (QUOTA, False)
        for c in clients:
            c.close()
    finally:
        for s in servers:
            s.stop()
