"""Invoices over HTTP, on SQLite and PostgreSQL: the reference figures, finalization once,
what it closes, exports, and who may read them."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from quotameter.context import Context
from quotameter.invoices.service import finalize_due
from quotameter.store.engine import make_engine, unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases.record import ingest
from support import at, demo_catalog, event, iso, stream

D = Decimal
APRIL_2 = at("2026-04-02T00:00:00Z")  # March ended a day ago: its invoices are due

LADDER = {
    "meters": {
        "sessions": {"event_type": "session.created", "aggregation": "count", "unit": "session"}
    },
    "plans": {
        "s100k": {
            "next_plan": "s200k",
            "prices": [{"type": "flat", "amount": "500.00"}],
            "entitlements": {
                "sessions": {
                    "meter": "sessions",
                    "allowance": {"fixed": 10},
                    "enforcement": "soft",
                    "slack": 0.05,
                }
            },
        },
        "s200k": {
            "prices": [{"type": "flat", "amount": "900.00"}],
            "entitlements": {
                "sessions": {
                    "meter": "sessions",
                    "allowance": {"fixed": 20},
                    "enforcement": "soft",
                    "slack": 0.05,
                }
            },
        },
        "team": {
            "prices": [
                {"type": "flat", "amount": "10.00"},
                {"type": "per_seat", "amount": "2.50"},
                {
                    "type": "graduated",
                    "feature": "sessions",
                    "tiers": [{"up_to": 3, "unit_price": "1.00"}, {"unit_price": "0.10"}],
                },
            ],
            "entitlements": {"sessions": {"meter": "sessions"}},
        },
    },
    "customers": {
        "docs": {"plan": "s100k", "owner": "cto@docs.example", "auto_upgrade": True},
        "crew": {"plan": "team", "seats": 4},
    },
}


@pytest.fixture
def demo(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    return client


def upcoming(client, customer: str, when=None, **params) -> dict:  # type: ignore[no-untyped-def]
    if when is not None:
        params["at"] = iso(when)
    r = client.get(f"/v1/customers/{customer}/invoices/upcoming", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def lines(invoice: dict) -> list[tuple[str, str]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


def finalize(client, clock) -> int:  # type: ignore[no-untyped-def]
    svc = client.app.state.services
    return finalize_due(svc.engine, svc.catalogs, clock())


def participant_minutes(client) -> None:  # type: ignore[no-untyped-def]
    """57 participant-minutes: 19-minute streams of three participants, two sharing a connection."""
    evs = []
    for participant in ("p1", "p2", "p3"):
        evs += stream(
            "connector.stream",
            "callco",
            at("2026-03-05T10:00:00Z"),
            at("2026-03-05T10:19:00Z"),
            stream_id=f"conn1/{participant}" if participant != "p3" else "conn2/p3",
        )
    assert client.post("/v1/events", json=evs).json()["accepted"] == 6


def test_57_participant_minutes_at_half_a_cent(demo) -> None:  # type: ignore[no-untyped-def]
    participant_minutes(demo)
    inv = upcoming(demo, "callco")
    assert (inv["status"], inv["id"], inv["currency"]) == ("upcoming", None, "USD")
    assert inv["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    [line] = inv["lines"]
    assert (line["kind"], D(str(line["quantity"])), line["unit_price"], line["amount"]) == (
        "unit",
        57,
        "0.005",
        "0.29",
    )
    assert inv["total"] == "0.29"


def test_two_topup_blocks_at_5(demo) -> None:  # type: ignore[no-untyped-def]
    r = demo.post(
        "/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "buy-1"}
    )
    assert r.status_code == 201, r.text
    inv = upcoming(demo, "acme")
    assert lines(inv) == [("topup", "10.00")]
    assert inv["lines"][0]["unit_price"] == "5.00" and inv["total"] == "10.00"


def test_volume_maximum_of_30_hours_on_25_included(demo) -> None:  # type: ignore[no-untyped-def]
    evs = [
        event("media.volume", "studio", at("2026-02-20T00:00:00Z"), hours_delta=30),
        event("media.volume", "studio", at("2026-02-25T00:00:00Z"), hours_delta=-10),
    ]
    assert demo.post("/v1/events", json=evs).json()["accepted"] == 2
    inv = upcoming(demo, "studio")  # billing cycle from the 15th: Feb 15 – Mar 15
    assert inv["period"] == {"start": "2026-02-15T00:00:00Z", "end": "2026-03-15T00:00:00Z"}
    assert lines(inv) == [("flat", "299.00"), ("overage", "100.00")]
    assert D(str(inv["lines"][1]["quantity"])) == 5 and inv["total"] == "399.00"


def test_auto_upgrade_one_third_into_the_period_is_prorated_on_its_own_line(client, clock) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=LADDER).status_code == 200
    third = at("2026-03-11T08:00:00Z")  # March has 31 days: a third is 10 days 8 hours
    clock.now = third
    assert (
        client.post(
            "/v1/events", json=[event("session.created", "docs", third) for _ in range(10)]
        ).json()["accepted"]
        == 10
    )
    inv = upcoming(client, "docs")  # the read settles the customer: the upgrade happens at `third`
    assert inv["plan"] == "s200k"
    assert lines(inv) == [("flat", "500.00"), ("proration", "266.67")]
    assert inv["total"] == "766.67"
    assert "s100k → s200k (auto_upgrade)" in inv["lines"][1]["description"]
    clock.now = APRIL_2
    assert finalize(client, clock) >= 1
    [final] = client.get("/v1/customers/docs/invoices").json()["invoices"]
    assert (final["status"], lines(final), final["total"]) == ("finalized", lines(inv), "766.67")
    assert lines(upcoming(client, "docs")) == [("flat", "900.00")]  # April: the new plan, in full


def test_seats_and_graduated_tiers(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=LADDER).status_code == 200
    assert (
        client.patch(
            "/v1/customers/crew", json={"seats": 6, "effective_at": "2026-03-05T00:00:00Z"}
        ).status_code
        == 200
    )
    assert (
        client.patch(
            "/v1/customers/crew", json={"seats": 2, "effective_at": "2026-03-06T00:00:00Z"}
        ).status_code
        == 200
    )
    client.post(
        "/v1/events",
        json=[event("session.created", "crew", at("2026-03-07T00:00:00Z")) for _ in range(5)],
    )
    inv = upcoming(client, "crew")
    # the highest seat count of the period (6), as for allowances; 3 sessions at 1.00, 2 at 0.10
    assert lines(inv) == [
        ("flat", "10.00"),
        ("per_seat", "15.00"),
        ("graduated", "3.00"),
        ("graduated", "0.20"),
    ]
    assert inv["total"] == "28.20"


def test_finalized_once_then_read_listed_and_exported(demo, clock) -> None:  # type: ignore[no-untyped-def]
    participant_minutes(demo)
    clock.now = at("2026-04-01T23:59:59Z")  # within March's grace window: not callco's March yet
    finalize(demo, clock)  # (studio's cycle Feb 15 – Mar 15 is due)
    assert demo.get("/v1/customers/callco/invoices").json() == {"invoices": []}
    clock.now = APRIL_2
    assert finalize(demo, clock) == 3  # acme, callco, docs: March
    assert finalize(demo, clock) == 0  # exactly once
    [inv] = demo.get("/v1/customers/callco/invoices").json()["invoices"]
    assert (inv["status"], inv["total"], inv["at"]) == ("finalized", "0.29", iso(APRIL_2))
    one = demo.get(f"/v1/customers/callco/invoices/{inv['id']}")
    assert one.status_code == 200 and one.json() == inv
    # the upcoming invoice of a finalized period is the finalized one
    assert upcoming(demo, "callco", at("2026-03-20T00:00:00Z")) == inv

    csv = demo.get(f"/v1/customers/callco/invoices/{inv['id']}", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "unit,audio_connector: 57 minutes,audio_connector,57,0.005,0.29" in csv.text
    assert csv.text.splitlines()[-1].endswith(",total,total,,,,0.29")
    assert (
        demo.get(f"/v1/customers/callco/invoices/{inv['id']}", headers={"Accept": "text/csv"}).text
        == csv.text
    )
    assert "0.29" in demo.get("/v1/customers/callco/invoices", params={"format": "csv"}).text

    for url in (
        f"/v1/customers/callco/invoices/{inv['id']}.html",
        f"/v1/customers/callco/invoices/{inv['id']}?format=html",
    ):
        page = demo.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert (
            "audio_connector: 57 minutes" in page.text
            and "0.29" in page.text
            and inv["number"] in page.text
        )

    assert demo.get("/v1/customers/callco/invoices/999999").status_code == 404
    assert demo.get("/v1/customers/nobody/invoices").status_code == 404
    assert demo.get("/v1/customers/callco/invoices/upcoming?format=pdf").status_code == 422


def test_finalized_once_by_concurrent_processes(demo, clock, db_url) -> None:  # type: ignore[no-untyped-def]
    participant_minutes(demo)
    catalogs = demo.app.state.services.catalogs
    engines = [make_engine(db_url) for _ in range(3)]
    made: list[int] = []
    start = threading.Barrier(len(engines))

    def run(engine) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        made.append(finalize_due(engine, catalogs, APRIL_2))

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    customers = demo.get("/v1/catalog").json()["customers"]
    listed = {c: demo.get(f"/v1/customers/{c}/invoices").json()["invoices"] for c in customers}
    assert sum(made) == sum(len(v) for v in listed.values()) >= 3
    assert [inv["total"] for inv in listed["callco"]] == ["0.29"]


def test_finalization_waits_for_a_writer_in_flight_and_bills_what_it_stored(demo, db_url) -> None:  # type: ignore[no-untyped-def]
    """An event checked against the open period and committed while the invoice is being
    finalized is in that invoice: never accepted and then missing from every invoice."""
    participant_minutes(demo)
    svc = demo.app.state.services
    writer = make_engine(db_url)
    late = stream(
        "connector.stream",
        "callco",
        at("2026-03-06T10:00:00Z"),
        at("2026-03-06T10:20:00Z"),
        stream_id="conn3/p4",
    )
    done: list[int] = []
    finalizing = threading.Thread(
        target=lambda: done.append(finalize_due(svc.engine, svc.catalogs, APRIL_2))
    )
    try:
        with unit_of_work(writer) as conn:
            result = ingest(Context(conn, svc.catalogs.current(conn)), late, to_us(APRIL_2))
            assert result.accepted == 2
            finalizing.start()
            finalizing.join(timeout=1.0)
            assert finalizing.is_alive(), "the invoice was finalized past an uncommitted writer"
        finalizing.join()
    finally:
        writer.dispose()
    assert done and done[0] >= 1
    [march] = demo.get("/v1/customers/callco/invoices").json()["invoices"]
    assert march["total"] == "0.39"  # 57 + 20 participant-minutes at 0.005


def test_an_event_for_a_finalized_period_is_refused_and_the_rest_kept(demo, clock) -> None:  # type: ignore[no-untyped-def]
    first = [
        event(
            "connector.stream",
            "callco",
            at("2026-03-05T09:00:00Z"),
            stream_id="early",
            action="stop",
        )
    ]
    assert (
        demo.post("/v1/events", json=first).json()["accepted"] == 1
    )  # stored; a stop of nothing counts nothing
    participant_minutes(demo)
    clock.now = APRIL_2
    finalize(demo, clock)
    late = [
        event(
            "connector.stream",
            "callco",
            at("2026-03-20T10:00:00Z"),
            stream_id="late",
            action="start",
        ),
        *stream(
            "connector.stream",
            "callco",
            at("2026-04-01T10:00:00Z"),
            at("2026-04-01T10:10:00Z"),
            stream_id="april",
        ),
        event(
            "connector.stream",
            "callco",
            at("2026-03-20T10:00:00Z"),  # a span reaching back into March
            stream_id="span",
            start="2026-03-31T23:00:00Z",
            end="2026-04-01T01:00:00Z",
        ),
    ]
    r = demo.post("/v1/events", json=late).json()
    assert (r["accepted"], [x["index"] for x in r["rejected"]]) == (2, [0, 3])
    assert r["rejected"][0]["error"] == (
        "time: the period 2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z of customer "
        "'callco' is invoiced (finalized); usage there can no longer change"
    )
    assert upcoming(demo, "callco")["total"] == "0.05"  # the April minutes
    again = demo.post("/v1/events", json=first).json()  # a repeat stays a duplicate, never an error
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 1, [])
    [march] = demo.get("/v1/customers/callco/invoices").json()["invoices"]
    assert march["total"] == "0.29"


def test_a_change_effective_in_a_finalized_period_is_refused(demo, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = APRIL_2
    assert finalize(demo, clock) >= 1
    march = "2026-03-20T00:00:00Z"
    for method, path, body in [
        ("PATCH", "/v1/customers/acme", {"seats": 12, "effective_at": march}),
        ("POST", "/v1/customers/acme/subscription", {"plan": "unlimited", "effective_at": march}),
        (
            "POST",
            "/v1/customers/acme/topups",
            {"feature": "media", "blocks": 1, "id": "t-late", "effective_at": march},
        ),
        (
            "POST",
            "/v1/customers/acme/grants",
            {"feature": "media", "amount": 5, "id": "g-late", "effective_at": march},
        ),
    ]:
        r = demo.request(method, path, json=body)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["error"].startswith(
            "effective_at: the period 2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z "
            "of customer 'acme' is invoiced (finalized)"
        )
    assert (
        demo.patch("/v1/customers/acme", json={"seats": 12}).status_code == 200
    )  # now: April, open
    assert demo.patch("/v1/customers/acme", json={"admins": ["x@acme.example"]}).status_code == 200


def test_a_customer_key_reads_only_its_own_invoices(demo, clock) -> None:  # type: ignore[no-untyped-def]
    participant_minutes(demo)
    clock.now = APRIL_2
    finalize(demo, clock)
    [own] = demo.get("/v1/customers/callco/invoices").json()["invoices"]
    [other] = demo.get("/v1/customers/acme/invoices").json()["invoices"]
    key = demo.post("/v1/keys", json={"role": "customer", "customer": "callco"}).json()["key"]
    mine = {"Authorization": f"Bearer {key}"}
    assert demo.get(f"/v1/customers/callco/invoices/{own['id']}", headers=mine).status_code == 200
    assert demo.get("/v1/customers/callco/invoices/upcoming", headers=mine).status_code == 200
    for path in (
        "/v1/customers/acme/invoices",
        "/v1/customers/acme/invoices/upcoming",
        f"/v1/customers/acme/invoices/{other['id']}",
        f"/v1/customers/acme/invoices/{other['id']}.html",
    ):
        r = demo.get(path, headers=mine)
        assert (r.status_code, r.json()["error"]) == (
            403,
            "customer: this key reads customer 'callco' only",
        ), path
    # another customer's invoice id under one's own name is not found
    assert demo.get(f"/v1/customers/callco/invoices/{other['id']}", headers=mine).status_code == 404


# --- the finalizer's passes ------------------------------------------------------------------


def finalizer(client, clock):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from quotameter.invoices.finalizer import Finalizer

    svc = client.app.state.services
    return Finalizer(svc.engine, svc.catalogs, clock, timedelta(days=1))


# A 20-minute call of callco's on February 20: a month before the catalog is applied.
FEBRUARY_CALL = stream(
    "connector.stream",
    "callco",
    at("2026-02-20T10:00:00Z"),
    at("2026-02-20T10:20:00Z"),
    stream_id="c1",
)


def test_a_late_event_for_a_past_month_is_invoiced_a_grace_window_after_it(client, clock) -> None:  # type: ignore[no-untyped-def]
    """The catalog is applied on March 10, so nothing is due before April; then events
    stamped in February arrive, in two batches: February is billable now, and is finalized
    once a grace window (a day) has passed since its last change, as after its end."""
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    passes = finalizer(client, clock)
    assert passes.run_once() == 0
    clock.advance(minutes=1)
    assert client.post("/v1/events", json=FEBRUARY_CALL).json()["accepted"] == 2
    clock.advance(minutes=1)
    assert passes.run_once() == 0  # more may follow: the next batch of a backfill
    more = stream(
        "connector.stream",
        "callco",
        at("2026-02-21T10:00:00Z"),
        at("2026-02-21T10:20:00Z"),
        stream_id="c2",
    )
    assert client.post("/v1/events", json=more).json()["accepted"] == 2
    clock.advance(hours=23, minutes=59)
    assert passes.run_once() == 0
    clock.advance(minutes=1)  # a day after the last batch
    assert passes.run_once() == 1
    [february] = client.get("/v1/customers/callco/invoices").json()["invoices"]
    assert (february["period"]["start"], february["total"]) == ("2026-02-01T00:00:00Z", "0.20")
    clock.advance(minutes=1)
    assert passes.run_once() == 0  # and once only


def test_one_customer_that_cannot_be_finalized_stops_no_other(client, clock, caplog) -> None:  # type: ignore[no-untyped-def]
    """alpha's plan is priced out of range by a catalog stored before prices were bounded:
    computing its invoice fails. beta and gamma, sorted after it, are finalized all the same;
    the failure is logged once however many passes it lasts, and alpha is finalized once its
    catalog is fixed."""
    import logging

    import orjson

    from quotameter.catalog import repository as catalogs
    from quotameter.timeutil import to_us

    doc = demo_catalog(alpha={"plan": "pro"}, beta={"plan": "connector"}, gamma={"plan": "pro"})
    doc["plans"]["pro_legacy"] = {
        **doc["plans"]["pro"],
        "prices": [{"type": "flat", "amount": "1e400"}],
    }
    doc["customers"]["alpha"]["plan"] = "pro_legacy"
    assert (
        client.put(
            "/v1/catalog",
            json={**doc, "plans": {**doc["plans"], "pro_legacy": doc["plans"]["pro"]}},
        ).status_code
        == 200
    )
    svc = client.app.state.services
    with unit_of_work(svc.engine) as conn:  # what a release without bounds stored
        catalogs.add(
            conn, catalogs.latest_version(conn) + 1, orjson.dumps(doc).decode(), to_us(clock())
        )
    clock.now = APRIL_2
    passes = finalizer(client, clock)
    caplog.set_level(logging.INFO, logger="quotameter.invoices")

    made = passes.run_once()
    clock.advance(minutes=5)
    made += passes.run_once()
    invoiced = {
        c for c in doc["customers"] if client.get(f"/v1/customers/{c}/invoices").json()["invoices"]
    }
    assert invoiced == set(doc["customers"]) - {"alpha"}
    assert made == len(invoiced)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and "'alpha'" in failures[0].getMessage() and failures[0].exc_info

    doc["plans"]["pro_legacy"]["prices"] = [{"type": "flat", "amount": "100.00"}]
    assert client.put("/v1/catalog", json=doc).status_code == 200
    clock.advance(minutes=5)
    assert passes.run_once() == 1
    [alpha] = client.get("/v1/customers/alpha/invoices").json()["invoices"]
    assert alpha["total"] == "100.00"
    assert [r.levelno for r in caplog.records if "'alpha'" in r.getMessage()] == [
        logging.ERROR,
        logging.INFO,
    ]


# --- money as written --------------------------------------------------------------------------


def test_money_has_its_currency_places_in_json_csv_and_html(client, clock) -> None:  # type: ignore[no-untyped-def]
    """Amounts have exactly the currency's places ("0.00"; JPY "500"; KWD "1.250"); a unit
    price keeps its own precision, with at least the currency's places ("299.00", "0.005")."""
    sessions = {
        "meter": "coedit_sessions",
        "allowance": {"fixed": 100},
        "topup": {"block_size": 10, "price": 500},
    }
    doc = demo_catalog(
        quiet={"plan": "unlimited"},
        tokyo={"plan": "yen"},
        kuwait={"plan": "dinar"},
        flat={"plan": "plain"},
    )
    doc["plans"].update(
        yen={
            "currency": "JPY",
            "entitlements": {"sessions": sessions},
            "prices": [
                {"type": "flat", "amount": 500},
                {"type": "unit", "feature": "sessions", "unit_price": "0.5"},
            ],
        },
        dinar={
            "currency": "KWD",
            "entitlements": {"sessions": {"meter": "coedit_sessions"}},
            "prices": [
                {"type": "flat", "amount": "1.25"},
                {"type": "unit", "feature": "sessions", "unit_price": "0.0050"},
            ],
        },
        plain={"prices": [{"type": "flat", "amount": 299}]},
    )
    assert client.put("/v1/catalog", json=doc).status_code == 200
    evs = [
        event("session.created", c, at("2026-03-05T10:00:00Z"))
        for c in ("tokyo", "kuwait")
        for _ in range(3)
    ]
    assert client.post("/v1/events", json=evs).json()["accepted"] == 6
    topup = client.post(
        "/v1/customers/tokyo/topups", json={"feature": "sessions", "blocks": 2, "id": "t1"}
    )
    assert topup.json()["price"] == "1000"
    assert (
        client.post(
            "/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "t2"}
        ).json()["price"]
        == "10.00"
    )

    def money(invoice: dict) -> list:  # type: ignore[type-arg]
        return [(line["unit_price"], line["amount"]) for line in invoice["lines"]] + [
            invoice["total"]
        ]

    expected = {
        "quiet": ["0.00"],
        "tokyo": [("500", "500"), ("0.5", "2"), ("500", "1000"), "1502"],  # 3 × 0.5 = 1.5 → 2
        "kuwait": [("1.250", "1.250"), ("0.005", "0.015"), "1.265"],
        "flat": [("299.00", "299.00"), "299.00"],
    }
    assert {c: money(upcoming(client, c)) for c in expected} == expected
    assert (
        client.get("/v1/customers/quiet/invoices/upcoming", params={"format": "csv"})
        .text.splitlines()[-1]
        .endswith(",total,total,,,,0.00")
    )
    clock.now = APRIL_2
    assert finalize(client, clock) >= len(expected)
    for customer, figures in expected.items():
        [final] = client.get(f"/v1/customers/{customer}/invoices").json()["invoices"]
        assert money(final) == figures
        page = client.get(f"/v1/customers/{customer}/invoices/{final['id']}.html").text
        assert f"{figures[-1]} {final['currency']}" in page
        csv = client.get(
            f"/v1/customers/{customer}/invoices/{final['id']}", params={"format": "csv"}
        ).text
        assert csv.splitlines()[-1].endswith(f",total,total,,,,{figures[-1]}")


def test_billing_starts_with_a_grant_or_a_plan_change_before_any_event(client, clock) -> None:  # type: ignore[no-untyped-def]
    """The catalog is applied on March 10; a grant effective in February and a plan change
    effective in January, for customers with no event, make those months billable: the
    finalizer's pass finds where each customer's billing starts, all customers at once."""
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    grant = {"feature": "media", "amount": 100, "id": "g1", "effective_at": "2026-02-15T00:00:00Z"}
    assert client.post("/v1/customers/acme/grants", json=grant).status_code in (200, 201)
    change = {"plan": "unlimited", "effective_at": "2026-01-20T00:00:00Z"}
    assert client.post("/v1/customers/studio/subscription", json=change).status_code == 200
    clock.advance(days=1, minutes=1)
    passes = finalizer(client, clock)
    assert passes.run_once() == 3  # acme: February; studio: January and February

    def periods(customer: str) -> list[str]:
        invoices = client.get(f"/v1/customers/{customer}/invoices").json()["invoices"]
        return sorted(i["period"]["start"] for i in invoices)

    assert periods("acme") == ["2026-02-01T00:00:00Z"]
    assert periods("studio") == ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]
    assert periods("docs") == periods("callco") == []


def test_a_billing_start_read_by_the_pass_is_read_again_before_anything_is_finalized(
    client, clock
) -> None:  # type: ignore[no-untyped-def]
    """The finalizer's pass reads every customer's billing start at once; an event stamped
    earlier that comes in before the customer's turn must not leave its month unbilled, out
    of reach behind the first finalized one."""
    from datetime import timedelta

    from quotameter.invoices.service import _finalize_customer

    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    # What the pass read: callco had nothing recorded, so billing starts with the catalog.
    as_read = to_us(clock())
    clock.advance(days=25)  # April 4: March is due
    svc = client.app.state.services
    assert client.post("/v1/events", json=FEBRUARY_CALL).json()["accepted"] == 2
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
    made, _ = _finalize_customer(
        svc.engine, catalog, "callco", clock(), timedelta(days=1), None, as_read, None, False
    )
    invoices = client.get("/v1/customers/callco/invoices").json()["invoices"]
    assert made == 2
    assert sorted(i["period"]["start"] for i in invoices) == [
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    ]
