"""consume: atomic check-and-record, idempotent, never past a hard limit under concurrency."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from support import ADMIN, ServerProcess, demo_catalog

QUOTA = 25
CATALOG = {
    "meters": {
        "api_calls": {"event_type": "api.call", "aggregation": "count", "filter": {"kind": ["write"]}},
        "gb": {"event_type": "storage", "aggregation": "sum", "value_property": "gb"},
    },
    "plans": {"p": {"entitlements": {
        "calls": {"meter": "api_calls", "allowance": {"fixed": QUOTA}, "enforcement": "hard",
                  "notify": {"percent_used": [40, 80], "exhausted": True, "recipients": "admins"}},
        "storage": {"meter": "gb", "allowance": {"fixed": 10}, "enforcement": "hard"},
    }}},
    "customers": {"c": {"plan": "p", "admins": ["ops@c.example"], "members": ["a@c.example"]},
                  "d": {"plan": "p", "admins": ["ops@d.example"]}},
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


def far_from_a_reset(catalog: dict[str, Any]) -> dict[str, Any]:
    """`catalog` with its calls counted per billing cycle, from a billing day half a month
    before today: servers that read the real clock then count every call of a test in one
    period, whatever the day it runs (a calendar month could end during it)."""
    doc = copy.deepcopy(catalog)
    doc["plans"]["p"]["entitlements"]["calls"]["period"] = "billing_cycle"
    anchor = (datetime.now(timezone.utc) - timedelta(days=15)).date().isoformat()
    for customer in doc["customers"].values():
        customer["billing_anchor"] = anchor
    return doc


def test_two_server_processes_give_the_answers_of_one(db_url: str, tmp_path: Path) -> None:
    """Both processes take requests at once, each with its own scheduler: no overshoot of the
    hard limit, a repeated id or event counted once, and each notice recorded once."""
    servers = [ServerProcess(db_url, str(tmp_path), QUOTAMETER_SCHEDULER="true") for _ in range(2)]
    try:
        for s in servers:
            s.wait_ready()
        clients = [httpx.Client(base_url=s.url, timeout=60, headers=ADMIN) for s in servers]
        assert clients[0].put("/v1/catalog", json=far_from_a_reset(CATALOG)).status_code == 200
        requests = [(clients[i % 2], f"r{i}") for i in range(48)]
        requests += [(clients[1], "r0"), (clients[0], "r1"), (clients[1], "r2")]  # repeats of ids
        # The same batch of events for customer d, sent through both processes at once. They
        # are stamped now, like the consumed units: the servers' clocks are the real one.
        events = [{"specversion": "1.0", "id": f"e{i}", "source": "app", "type": "api.call", "subject": "d",
                   "data": {"kind": "write"}} for i in range(QUOTA)]
        with ThreadPoolExecutor(max_workers=24) as pool:
            posted = [pool.submit(c.post, "/v1/events", json=events) for c in clients for _ in range(2)]
            answers = list(pool.map(lambda cr: consume(cr[0], "c", "calls", cr[1], 1), requests))
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers if a.status_code >= 500]
        granted = {requests[i][1] for i, a in enumerate(answers) if a.status_code == 200 and not a.json()["duplicate"]}
        assert len(granted) == QUOTA
        final = clients[1].get("/v1/customers/c/entitlements/calls").json()
        assert (final["usage"], final["has_access"]) == (QUOTA, False)
        results = [p.result().json() for p in posted]
        assert sum(r["accepted"] for r in results) == QUOTA and sum(r["duplicates"] for r in results) == 3 * QUOTA
        assert clients[0].get("/v1/customers/d/entitlements/calls").json()["usage"] == QUOTA

        # Each process settles the customers it is asked about; both evaluated c and d.
        for customer in ("c", "d"):
            lists = [c.get(f"/v1/customers/{customer}/notifications").json()["notifications"] for c in clients]
            assert lists[0] == lists[1]  # one outbox
            kinds = sorted((n["type"], float(n["percent"])) for n in lists[0])
            assert kinds == [("access.blocked", 100), ("usage.exhausted", 100),
                             ("usage.threshold", 40), ("usage.threshold", 80)], (customer, kinds)
        for c in clients:
            c.close()
    finally:
        for s in servers:
            s.stop()
