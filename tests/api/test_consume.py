"""consume: atomic check-and-record, idempotent, never past a hard limit under concurrency."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from quotameter.context import Context
from quotameter.invoices.service import finalize_due
from quotameter.meters import service as meters
from quotameter.meters.model import CONSUME_SOURCE
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import events
from quotameter.timeutil import to_us
from quotameter.usecases.consume import ConsumeRequest
from quotameter.usecases.consume import consume as use_case
from quotameter.usecases.record import prepare, store
from support import ADMIN, ServerProcess, at, demo_catalog, event

QUOTA = 25
CATALOG = {
    "meters": {
        "api_calls": {
            "event_type": "api.call",
            "aggregation": "count",
            "filter": {"kind": ["write"]},
        },
        "gb": {"event_type": "storage", "aggregation": "sum", "value_property": "gb"},
    },
    "plans": {
        "p": {
            "entitlements": {
                "calls": {
                    "meter": "api_calls",
                    "allowance": {"fixed": QUOTA},
                    "enforcement": "hard",
                    "notify": {"percent_used": [40, 80], "exhausted": True, "recipients": "admins"},
                },
                "storage": {"meter": "gb", "allowance": {"fixed": 10}, "enforcement": "hard"},
            }
        }
    },
    "customers": {
        "c": {"plan": "p", "admins": ["ops@c.example"], "members": ["a@c.example"]},
        "d": {"plan": "p", "admins": ["ops@d.example"]},
    },
}


def consume(client, customer, feature, id_, amount):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/customers/{customer}/entitlements/{feature}/consume",
        json={"id": id_, "amount": amount},
    )


def sent_again_while_busy(send, attempts: int = 50):  # type: ignore[no-untyped-def]
    """`send()` until it is not refused as busy, as a client does with a 503 (at once here:
    the test needs no pause). A refusal must be a 503 with Retry-After, never another 5xx."""
    for _ in range(attempts):
        answer = send()
        if answer.status_code != 503:
            return answer
        assert "retry-after" in answer.headers, answer.text
    return answer


def test_consume_records_refuses_and_is_idempotent(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    r = consume(client, "c", "storage", "req-1", "7.5")
    assert r.status_code == 200
    assert (r.json()["allowed"], r.json()["duplicate"], Decimal(str(r.json()["usage"]))) == (
        True,
        False,
        Decimal("7.5"),
    )
    again = consume(client, "c", "storage", "req-1", "7.5")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert Decimal(str(again.json()["usage"])) == Decimal("7.5")  # counted once
    refused = consume(client, "c", "storage", "req-2", 3)
    assert refused.status_code == 409
    assert refused.json()["allowed"] is False and "2.5 left" in refused.json()["reason"]
    assert (
        refused.json()["error"] == f"amount: {refused.json()['reason']}"
    )  # names its field, like every 4xx
    # A count meter records whole events, carrying its filter so that they are counted.
    assert consume(client, "c", "calls", "n-1", 3).json()["usage"] == 3
    bad = consume(client, "c", "calls", "n-2", "1.5")
    assert bad.status_code == 422 and bad.json()["error"].startswith(
        "amount: meter 'api_calls' counts whole events"
    )
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
    anchor = (datetime.now(UTC) - timedelta(days=15)).date().isoformat()
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
        events = [
            {
                "specversion": "1.0",
                "id": f"e{i}",
                "source": "app",
                "type": "api.call",
                "subject": "d",
                "data": {"kind": "write"},
            }
            for i in range(QUOTA)
        ]
        with ThreadPoolExecutor(max_workers=24) as pool:
            # Under this contention a write may wait past QUOTAMETER_WRITE_WAIT_SECONDS and be
            # refused 503 with nothing stored: it is sent again, as a client would.
            posted = [
                pool.submit(sent_again_while_busy, lambda c=c: c.post("/v1/events", json=events))
                for c in clients
                for _ in range(2)
            ]
            answers = list(
                pool.map(
                    lambda cr: sent_again_while_busy(
                        lambda: consume(cr[0], "c", "calls", cr[1], 1)
                    ),
                    requests,
                )
            )
        assert all(a.status_code in (200, 409) for a in answers), [
            a.text for a in answers if a.status_code >= 500
        ]
        granted = {
            requests[i][1]
            for i, a in enumerate(answers)
            if a.status_code == 200 and not a.json()["duplicate"]
        }
        assert len(granted) == QUOTA
        final = clients[1].get("/v1/customers/c/entitlements/calls").json()
        assert (final["usage"], final["has_access"]) == (QUOTA, False)
        results = [p.result().json() for p in posted]
        assert (
            sum(r["accepted"] for r in results) == QUOTA
            and sum(r["duplicates"] for r in results) == 3 * QUOTA
        )
        assert clients[0].get("/v1/customers/d/entitlements/calls").json()["usage"] == QUOTA

        # Each process settles the customers it is asked about; both evaluated c and d.
        for customer in ("c", "d"):
            lists = [
                c.get(f"/v1/customers/{customer}/notifications").json()["notifications"]
                for c in clients
            ]
            assert lists[0] == lists[1]  # one outbox
            kinds = sorted((n["type"], float(n["percent"])) for n in lists[0])
            assert kinds == [
                ("access.blocked", 100),
                ("usage.exhausted", 100),
                ("usage.threshold", 40),
                ("usage.threshold", 80),
            ], (customer, kinds)
        for c in clients:
            c.close()
    finally:
        for s in servers:
            s.stop()


# --- one event per consumption, its id its own ------------------------------------------------

UNLIMITED = {
    **CATALOG,
    "plans": {
        "p": {
            "entitlements": {
                **CATALOG["plans"]["p"]["entitlements"],  # type: ignore[index]
                "free_calls": {"meter": "api_calls", "enforcement": "none"},
                "free_gb": {"meter": "gb", "enforcement": "none"},
            }
        }
    },
}


def _stored(client, *, source: str = CONSUME_SOURCE) -> list[str]:  # type: ignore[no-untyped-def]
    with client.app.state.services.engine.connect() as conn:
        return sorted(
            conn.execute(select(events.c.event_id).where(events.c.source == source)).scalars()
        )


def _usage(client, customer: str, feature: str) -> Decimal:  # type: ignore[no-untyped-def]
    return Decimal(
        str(client.get(f"/v1/customers/{customer}/entitlements/{feature}").json()["usage"])
    )


def _recomputed(client, customer: str, feature: str) -> Decimal:  # type: ignore[no-untyped-def]
    """The balance's usage derived again from the raw events alone."""
    b = client.get(f"/v1/customers/{customer}/entitlements/{feature}").json()
    svc = client.app.state.services
    with svc.engine.connect() as conn:
        spec = svc.catalogs.current(conn).spec.meters[b["meter"]]
        return meters.recompute_usage(
            conn,
            spec,
            customer,
            to_us(at(b["period"]["start"])),
            to_us(at(b["period"]["end"])),
            to_us(at(b["at"])),
        )


def test_a_consume_is_one_event_whatever_the_amount_and_its_id_is_its_own(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    first = consume(client, "c", "calls", "order-7", 2)
    assert (first.status_code, first.json()["duplicate"], first.json()["usage"]) == (200, False, 2)
    # Consumes of several units used to be one event per unit, `order-7`, `order-7#2`, …
    second = consume(client, "c", "calls", "order-7#2", 5)
    assert (second.status_code, second.json()["duplicate"], second.json()["usage"]) == (
        200,
        False,
        7,
    )
    assert _stored(client) == ["c/calls/order-7", "c/calls/order-7#2"]
    assert _usage(client, "c", "calls") == _recomputed(client, "c", "calls") == 7
    usage = client.get("/v1/customers/c/usage", params={"feature": "calls"}).json()
    assert usage["total"] == 7


def test_a_consume_of_half_a_million_units_is_one_row_counted_as_all_of_them(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=UNLIMITED)
    assert consume(client, "c", "free_calls", "bulk", 500_000).json()["usage"] == 500_000
    assert _stored(client) == ["c/free_calls/bulk"]
    assert consume(client, "c", "free_calls", "one", 1).json()["usage"] == 500_001
    assert (
        _usage(client, "c", "calls") == _recomputed(client, "c", "calls") == 500_001
    )  # the same meter
    # A rebuild of the meter from the raw events gives the same answer.
    svc = client.app.state.services
    with unit_of_work(svc.engine) as conn:
        meters.rebuild(conn, svc.catalogs.current(conn).spec, "api_calls")
    assert _usage(client, "c", "free_calls") == 500_001


def test_a_count_consume_takes_at_most_a_billion_units_and_a_sum_less_than_10_15(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=UNLIMITED)
    assert consume(client, "c", "free_calls", "most", 10**9).json()["usage"] == 10**9
    r = consume(client, "c", "free_calls", "more", 10**9 + 1)
    assert (r.status_code, r.json()["error"]) == (
        422,
        "amount: at most 1000000000 units of meter 'api_calls' per consume (got 1000000001)",
    )
    r = consume(client, "c", "free_gb", "huge", 10**15)
    assert (r.status_code, r.json()["error"]) == (
        422,
        "amount: must be less than 10^15 (got 1000000000000000)",
    )
    assert consume(client, "c", "free_gb", "big", "999999999999999.5").status_code == 200


def test_an_id_with_a_control_character_is_refused_naming_the_id(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    r = consume(client, "c", "calls", "tab\there", 1)
    assert (r.status_code, r.json()["error"]) == (
        422,
        "id: must not contain control characters (U+0000 to U+001F)",
    )


# --- the reserved source ------------------------------------------------------------------------


def test_ingest_refuses_the_consume_source_by_index_and_keeps_the_rest(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    batch = [
        event("api.call", "c", None, kind="write"),
        {
            **event("api.call", "c", None, kind="write"),
            "id": "c/calls/pre",
            "source": CONSUME_SOURCE,
        },
        event("api.call", "c", None, kind="write"),
    ]
    r = client.post("/v1/events", json=batch).json()
    assert r == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [{"index": 1, "error": "source: 'quotameter.consume' is reserved for consume"}],
    }
    # Nobody took the id before the consume that names it.
    pre = consume(client, "c", "calls", "pre", 1)
    assert (pre.status_code, pre.json()["duplicate"], pre.json()["usage"]) == (200, False, 3)


def test_a_users_event_never_counts_as_more_than_one(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    ev = event("api.call", "c", None, kind="write", **{"quotameter.units": 1000})
    assert client.post("/v1/events", json=[ev]).json()["accepted"] == 1
    assert _usage(client, "c", "calls") == _recomputed(client, "c", "calls") == 1


# --- the same id again ----------------------------------------------------------------------------


def test_the_same_id_with_another_amount_is_a_conflict_naming_the_first(client, clock) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    assert consume(client, "c", "calls", "order-7", 2).status_code == 200
    r = consume(client, "c", "calls", "order-7", 5)
    assert (r.status_code, r.json()) == (
        409,
        {
            "error": (
                "id: 'order-7' already recorded a consumption of 2 of 'calls' for customer 'c' "
                "(asked: 5); "
                "a repeat must ask the same amount, another consumption needs another id"
            )
        },
    )
    assert consume(client, "c", "storage", "s-1", "7.5").status_code == 200
    r = consume(client, "c", "storage", "s-1", "7.25")
    assert r.status_code == 409 and r.json()["error"].startswith(
        "id: 's-1' already recorded a consumption of 7.5 "
    )
    # The same amount is the same request, also later or with another `at`: recorded once.
    clock.advance(hours=1)
    again = consume(client, "c", "calls", "order-7", "2.000")
    assert (again.status_code, again.json()["duplicate"], again.json()["usage"]) == (200, True, 2)
    r = client.post(
        "/v1/customers/c/entitlements/storage/consume",
        json={"id": "s-1", "amount": "7.5", "at": "2026-03-02T00:00:00Z"},
    )
    assert (r.status_code, r.json()["duplicate"], r.json()["usage"]) == (200, True, 7.5)
    # An id names a consumption of one feature: the same id on another feature is another one.
    assert consume(client, "c", "storage", "order-7", 1).json()["duplicate"] is False
    assert consume(client, "d", "calls", "order-7", 5).json()["duplicate"] is False
    assert _usage(client, "c", "calls") == 2


def test_a_consume_in_an_invoiced_period_is_a_conflict_naming_at(client, clock) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=CATALOG)
    march = "2026-03-20T00:00:00Z"
    body = {"id": "late", "amount": 1, "at": march}
    assert client.post("/v1/customers/c/entitlements/calls/consume", json=body).status_code == 200
    clock.now = at("2026-04-02T12:00:00Z")
    svc = client.app.state.services
    assert finalize_due(svc.engine, svc.catalogs, clock()) >= 1
    r = client.post("/v1/customers/c/entitlements/calls/consume", json={**body, "id": "later"})
    assert (r.status_code, r.json()) == (
        409,
        {
            "error": (
                "at: the period 2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z of customer 'c' is "
                "invoiced (finalized); "
                "a change effective there can no longer be recorded"
            )
        },
    )
    # The wording of every other change effective there.
    seats = client.patch("/v1/customers/c", json={"seats": 3, "effective_at": march}).json()[
        "error"
    ]
    assert seats.split(": ", 1)[1] == r.json()["error"].split(": ", 1)[1]
    # A repeat of what was recorded before stays a duplicate, as a repeated event does.
    again = client.post("/v1/customers/c/entitlements/calls/consume", json=body)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)


def test_consume_evaluates_waiting_usage_now_not_at_its_own_instant(client) -> None:  # type: ignore[no-untyped-def]
    """Usage ingested now waits for its evaluation; a consume dated last month must not take
    that evaluation and make it about last month: the 40 % notice of this month is recorded."""
    client.put("/v1/catalog", json=CATALOG)
    february = {"id": "february", "amount": 1, "at": "2026-02-20T00:00:00Z"}
    assert (
        client.post("/v1/customers/c/entitlements/calls/consume", json=february).status_code == 200
    )
    assert client.get("/v1/customers/c/notifications").json()["notifications"] == []
    assert (
        client.post(
            "/v1/events", json=[event("api.call", "c", None, kind="write") for _ in range(10)]
        ).json()["accepted"]
        == 10
    )
    # A repeat records nothing, so nothing else would ask for this month's evaluation again.
    again = client.post("/v1/customers/c/entitlements/calls/consume", json=february)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    notices = client.get("/v1/customers/c/notifications").json()["notifications"]
    assert [(n["type"], n["percent"], n["period"]["start"]) for n in notices] == [
        ("usage.threshold", 40, "2026-03-01T00:00:00Z")
    ]


def test_consumes_recorded_one_event_per_unit_keep_counting_and_answering(client, clock) -> None:  # type: ignore[no-untyped-def]
    """Databases written before one event per consumption hold `{id}`, `{id}#2`, … stored
    together."""
    client.put("/v1/catalog", json=CATALOG)
    svc = client.app.state.services

    def units(request_id: str, amount: int) -> list[dict]:
        base = f"c/calls/{request_id}"
        return [
            {
                **event("api.call", "c", clock(), kind="write"),
                "source": CONSUME_SOURCE,
                "id": base if k == 1 else f"{base}#{k}",
            }
            for k in range(1, amount + 1)
        ]

    for request_id, amount in (("order-7", 3), ("single", 1)):
        clock.advance(seconds=1)
        with unit_of_work(svc.engine) as conn:
            catalog = svc.catalogs.current(conn)
            assert (
                store(
                    Context(conn, catalog),
                    prepare(catalog, units(request_id, amount), to_us(clock()), consume=True),
                ).accepted
                == amount
            )
    assert _usage(client, "c", "calls") == _recomputed(client, "c", "calls") == 4  # one each
    assert consume(client, "c", "calls", "order-7", 3).json()["duplicate"] is True
    assert consume(client, "c", "calls", "single", 1).json()["duplicate"] is True
    r = consume(client, "c", "calls", "order-7", 2)
    assert r.status_code == 409 and r.json()["error"].startswith(
        "id: 'order-7' already recorded a consumption of 3 "
    )
    r = consume(client, "c", "calls", "order-7#2", 1)
    assert (r.status_code, r.json()["error"]) == (
        409,
        (
            "id: 'order-7#2' is taken by unit 2 of the consumption 'order-7' of 'calls' for "
            "customer 'c', "
            "recorded one event per unit; another consumption needs another id"
        ),
    )
    new = consume(client, "c", "calls", "order-7#4", 2)
    assert (new.status_code, new.json()["duplicate"], new.json()["usage"]) == (200, False, 6)
    assert _usage(client, "c", "calls") == _recomputed(client, "c", "calls") == 6


@pytest.mark.parametrize(
    "db_url", ["postgresql"], indirect=True
)  # SQLite runs one writer at a time
def test_a_repeat_racing_under_another_meters_lock_is_answered_as_a_duplicate(
    client, clock
) -> None:  # type: ignore[no-untyped-def]
    """The plan changes on March 5 and with it the meter behind `tasks`: a consume dated
    before and a repeat dated after hold different meters' locks, and run at once. The
    repeat's insert waits for the first's; it must then answer as a repeat, not as recorded."""
    catalog = {
        "meters": {
            "m1": {"event_type": "task.a", "aggregation": "count"},
            "m2": {"event_type": "task.b", "aggregation": "count"},
        },
        "plans": {
            "a": {"entitlements": {"tasks": {"meter": "m1", "enforcement": "none"}}},
            "b": {"entitlements": {"tasks": {"meter": "m2", "enforcement": "none"}}},
        },
        "customers": {"c": {"plan": "a"}},
    }
    client.put("/v1/catalog", json=catalog)
    assert (
        client.post(
            "/v1/customers/c/subscription",
            json={"plan": "b", "effective_at": "2026-03-05T00:00:00Z"},
        ).status_code
        == 200
    )
    client.get(
        "/v1/customers/c/entitlements/tasks"
    )  # settles what is pending: nothing left to wait on
    svc = client.app.state.services
    answers: list[httpx.Response] = []
    repeat = threading.Thread(
        target=lambda: answers.append(
            client.post(
                "/v1/customers/c/entitlements/tasks/consume",
                json={"id": "r", "amount": 4, "at": "2026-03-08T00:00:00Z"},
            )
        )
    )
    with unit_of_work(svc.engine) as conn:
        req = ConsumeRequest("c", "tasks", "r", Decimal(4), at("2026-03-02T00:00:00Z"))
        first = use_case(Context(conn, svc.catalogs.current(conn)), req, to_us(clock()), clock)
        assert (first.allowed, first.duplicate) == (True, False)
        repeat.start()
        with svc.engine.connect() as watcher:  # until the repeat waits for this transaction
            while (
                repeat.is_alive()
                and not watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                ).scalar()
            ):
                watcher.rollback()
            assert repeat.is_alive(), "the repeat did not wait for the first consume"
    repeat.join()
    [r] = answers
    assert (r.status_code, r.json()["duplicate"]) == (200, True)
    assert _stored(client) == ["c/tasks/r"]
