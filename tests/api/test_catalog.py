"""PUT /v1/catalog and `quotameter apply`: all or nothing, every error named."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quotameter.cli import app as cli
from support import at, demo_catalog, event, stream


def test_an_invalid_catalog_lists_every_error_and_changes_nothing(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).json()["version"] == 1
    bad = demo_catalog()
    bad["plans"]["basic"]["entitlements"]["media"]["meter"] = "nope"
    bad["customers"]["acme"]["plan"] = "gold"
    bad["meters"]["coedit_sessions"]["aggregation"] = "avg"
    r = client.put("/v1/catalog", json=bad)
    assert r.status_code == 422
    assert set(r.json()["errors"]) >= {
        "plans.basic.entitlements.media.meter: unknown meter 'nope'",
        "customers.acme.plan: unknown plan 'gold'",
    }
    assert any(e.startswith("meters.coedit_sessions.aggregation: ") for e in r.json()["errors"])
    assert client.get("/v1/catalog").json()["version"] == 1
    assert client.get("/v1/catalog").json()["customers"]["acme"]["plan"] == "basic"


def test_changing_a_meter_recomputes_its_usage_from_raw_events(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/v1/catalog", json=demo_catalog())
    t = at("2026-03-10T09:00:00Z")
    client.post(
        "/v1/events",
        json=[
            event("session.created", "docs", t, plan="free"),
            event("session.created", "docs", t, plan="paid"),
            event("session.created", "docs", t, plan="paid"),
        ],
    )
    changed = demo_catalog()
    changed["meters"]["coedit_sessions"]["filter"] = {"plan": "paid"}
    r = client.put("/v1/catalog", json=changed)
    unchanged = {"added": [], "removed": [], "changed": []}
    assert r.json() == {
        "version": 2,
        "rebuilt_meters": ["coedit_sessions"],
        "dry_run": False,
        "refused": False,
        "changes": {
            "meters": {**unchanged, "changed": ["coedit_sessions"]},
            "plans": unchanged,
            "customers": unchanged,
        },
        "dropped_with_records": {},
    }
    usage = client.get(
        "/v1/customers/docs/entitlements/sessions", params={"at": "2026-03-11T00:00:00Z"}
    )
    assert Decimal(str(usage.json()["usage"])) == 2


def test_cli_apply_and_balance(tmp_path: Path, db_url: str) -> None:
    runner = CliRunner()
    good = tmp_path / "catalog.yaml"
    good.write_text(yaml.safe_dump(demo_catalog()))
    result = runner.invoke(cli, ["apply", str(good), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "catalog version 1 applied" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("meters:\n  m: {event_type: x, aggregation: sum}\n")
    result = runner.invoke(cli, ["apply", str(bad), "--database-url", db_url])
    assert result.exit_code == 1
    assert "meters.m.value_property: required for aggregation 'sum'" in result.output

    result = runner.invoke(
        cli, ["balance", "acme", "media", "--at", "2026-03-05T00:00:00Z", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.output
    assert (
        "  period      2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z\n  usage       0 minutes\n"
        in result.output
    )


def test_names_end_where_the_text_ends_and_addresses_hold_no_control_character(client) -> None:  # type: ignore[no-untyped-def]
    bad = demo_catalog()
    bad["customers"]["acme\n"] = bad["customers"].pop("acme")
    bad["plans"]["basic\n"] = bad["plans"]["basic"]
    bad["meters"]["coedit_sessions\n"] = bad["meters"]["coedit_sessions"]
    bad["plans"]["pro"]["entitlements"]["managed_media\n"] = bad["plans"]["pro"]["entitlements"][
        "managed_media"
    ]
    bad["customers"]["studio"]["owner"] = "owner@studio.example\n"
    bad["customers"]["docs"]["admins"] = [
        "ops@docs.example",
        "o\x01ps@docs.example",
        "ops@docs.\x7fexample",
        "ops@docs.example\x85",
    ]
    bad["meters"]["media_minutes"]["event_type"] = "media.\x00activity"  # was a 500 on PostgreSQL
    r = client.put("/v1/catalog", json=bad)
    assert r.status_code == 422, r.text
    invalid_name = (
        "use letters, digits and _ . : -, starting with a letter or digit, at most 128 characters"
    )
    assert set(r.json()["errors"]) >= {
        f"customers.acme\n: invalid name 'acme\\n': {invalid_name}",
        f"plans.basic\n: invalid name 'basic\\n': {invalid_name}",
        f"meters.coedit_sessions\n: invalid name 'coedit_sessions\\n': {invalid_name}",
        f"plans.pro.entitlements.managed_media\n: invalid name 'managed_media\\n': {invalid_name}",
        "customers.studio.owner: not an e-mail address: 'owner@studio.example\\n'",
        "customers.docs.admins[1]: not an e-mail address: 'o\\x01ps@docs.example'",
        "customers.docs.admins[2]: not an e-mail address: 'ops@docs.\\x7fexample'",
        "customers.docs.admins[3]: not an e-mail address: 'ops@docs.example\\x85'",
        "meters.media_minutes.event_type: must not contain control characters (U+0000 to U+001F) "
        "(got 'media.\\x00activity')",
    }, r.json()["errors"]


def test_contacts_changed_through_the_api_are_checked_the_same_way(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    for change in (
        {"admins": ["ops@acme.example\n"]},
        {"owner": "o\x00wner@acme.example"},
        {"members": ["ok@acme.example", "m\x1b@acme.example"]},
    ):
        r = client.patch("/v1/customers/acme", json=change)
        assert r.status_code == 422, (change, r.text)
        field = next(iter(change))
        assert (
            r.json()["error"].startswith(f"{field}")
            and "not an e-mail address" in r.json()["error"]
        ), r.text
    assert client.get("/v1/customers/acme").json()["admins"] == ["ops@acme.example"]


# --- money and quantities at their bounds ------------------------------------------------------

TOP = "999999999999999.999999999999"  # the largest quantity or unit price a catalog takes
TOP_AMOUNT = "999999999999999.99"  # the largest flat, per-seat or top-up amount in USD


def at_the_bounds(seats: int) -> dict:  # type: ignore[type-arg]
    return {
        "meters": {"bytes": {"event_type": "stored", "aggregation": "sum", "value_property": "v"}},
        "plans": {
            "max": {
                "entitlements": {
                    "bytes": {
                        "meter": "bytes",
                        "allowance": {"per_seat": TOP},
                        "enforcement": "overage",
                        "overage_limit": TOP,
                        "topup": {"block_size": TOP, "price": TOP_AMOUNT},
                    }
                },
                "prices": [
                    {"type": "flat", "amount": TOP_AMOUNT},
                    {"type": "per_seat", "amount": TOP_AMOUNT},
                    {"type": "unit", "feature": "bytes", "unit_price": TOP},
                    {"type": "overage", "feature": "bytes", "unit_price": TOP},
                    {
                        "type": "graduated",
                        "feature": "bytes",
                        "tiers": [
                            {"up_to": "0.000000000001", "unit_price": TOP},
                            {"up_to": TOP, "unit_price": TOP},
                            {"unit_price": TOP},
                        ],
                    },
                    {"type": "topup", "feature": "bytes"},
                ],
            }
        },
        "customers": {"whale": {"plan": "max", "seats": seats}},
    }


@pytest.mark.parametrize("seats", [0, 1_000_000_000])
def test_an_invoice_at_the_bounds_computes_and_finalizes(client, clock, seats: int) -> None:  # type: ignore[no-untyped-def]
    from quotameter.invoices.service import finalize_due

    r = client.put("/v1/catalog", json=at_the_bounds(seats))
    assert r.status_code == 200, r.text
    evs = [event("stored", "whale", at("2026-03-05T10:00:00Z"), v=TOP) for _ in range(3)]
    assert client.post("/v1/events", json=evs).json()["accepted"] == 3
    r = client.post(
        "/v1/customers/whale/topups", json={"feature": "bytes", "blocks": 1_000_000, "id": "t1"}
    )
    assert r.status_code == 201, r.text
    assert client.get("/v1/customers/whale/entitlements/bytes").status_code == 200
    running = client.get("/v1/customers/whale/invoices/upcoming")
    assert running.status_code == 200, running.text
    with localcontext(Context(prec=100)):  # the exact figures, each line rounded to the cent
        top, amount, cent, blocks = Decimal(TOP), Decimal(TOP_AMOUNT), Decimal("0.01"), 1_000_000
        usage = top * 3
        limit = top * seats + top * blocks
        tiers = [min(usage, Decimal("1e-12")), top - Decimal("1e-12"), usage - top]
        lines = [
            amount,
            amount * seats,
            usage * top,
            max(0, usage - limit) * top,
            *(t * top for t in tiers),
            amount * blocks,
        ]
        expected = sum(line.quantize(cent, rounding=ROUND_HALF_UP) for line in lines)
    assert running.json()["total"] == format(expected, "f")
    clock.now = at("2026-04-02T00:00:00Z")
    assert (
        finalize_due(
            client.app.state.services.engine, client.app.state.services.catalogs, clock.now
        )
        == 1
    )
    [final] = client.get("/v1/customers/whale/invoices").json()["invoices"]
    assert final["total"] == running.json()["total"]
    assert client.get("/v1/customers/whale/notifications").status_code == 200


def test_the_smallest_allowance_far_exceeded_is_read_and_notified(client, clock) -> None:  # type: ignore[no-untyped-def]
    from quotameter.notifications import scheduler

    doc = {
        "meters": {"bytes": {"event_type": "stored", "aggregation": "sum", "value_property": "v"}},
        "plans": {
            "min": {
                "entitlements": {
                    "bytes": {
                        "meter": "bytes",
                        "allowance": {"fixed": "0.000000000001"},
                        "notify": {"percent_used": [50], "exhausted": True},
                    }
                }
            }
        },
        "customers": {"crumb": {"plan": "min"}},
    }
    assert client.put("/v1/catalog", json=doc).status_code == 200
    evs = [event("stored", "crumb", at("2026-03-05T10:00:00Z"), v=TOP) for _ in range(3)]
    assert client.post("/v1/events", json=evs).json()["accepted"] == 3
    svc = client.app.state.services
    scheduler.tick(svc.engine, svc.catalogs, clock)
    r = client.get("/v1/customers/crumb/notifications")
    assert r.status_code == 200, r.text
    notices = json.loads(r.text, parse_float=Decimal)["notifications"]
    blocked = [n["percent"] for n in notices if n["type"] == "access.blocked"]
    assert blocked == [Decimal("999999999999999.99")]  # the most a notice keeps
    assert (
        client.post("/v1/customers/crumb/entitlements/bytes/check", json={"amount": 1}).json()[
            "allowed"
        ]
        is False
    )


# --- customers left out ----------------------------------------------------------------------


def with_records(client, clock) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The demo customers, each with something recorded and a finalized March; and `idle`,
    added since, with nothing recorded."""
    from quotameter.invoices.service import finalize_due

    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    evs = stream(
        "connector.stream",
        "callco",
        at("2026-03-05T10:00:00Z"),
        at("2026-03-05T10:10:00Z"),
        stream_id="s",
    )
    assert client.post("/v1/events", json=evs).json()["accepted"] == 2
    assert (
        client.post(
            "/v1/customers/acme/topups", json={"feature": "media", "blocks": 1, "id": "t"}
        ).status_code
        == 201
    )
    assert client.patch("/v1/customers/studio", json={"seats": 3}).status_code == 200
    assert client.post("/v1/keys", json={"role": "customer", "customer": "docs"}).status_code == 201
    clock.now = at("2026-04-02T00:00:00Z")
    svc = client.app.state.services
    assert finalize_due(svc.engine, svc.catalogs, clock.now) == 4
    doc = demo_catalog(idle={"plan": "basic"})
    assert client.put("/v1/catalog", json=doc).status_code == 200
    return doc


RECORDS = {
    "acme": {"invoices": 1, "grants": 1, "notices": 1},
    "callco": {"events": 2, "invoices": 1},
    "docs": {"keys": 1, "invoices": 1},
    "studio": {"invoices": 1, "seat_changes": 1},
}


def test_a_catalog_that_leaves_out_customers_with_records_is_refused_naming_each(
    client, clock
) -> None:  # type: ignore[no-untyped-def]
    with_records(client, clock)
    version = client.get("/v1/catalog").json()["version"]

    r = client.put("/v1/catalog", json={})
    assert r.status_code == 409, r.text
    assert r.json() == {
        "error": "customers: the catalog leaves out 4 customer(s) with recorded data; "
        "apply it with prune to drop them (their records are kept)",
        "errors": [
            "customers.acme: has 1 invoice, 1 grant, 1 notice",
            "customers.callco: has 2 events, 1 invoice",
            "customers.docs: has 1 key, 1 invoice",
            "customers.studio: has 1 invoice, 1 seat change",
        ],
    }
    assert client.get("/v1/catalog").json()["version"] == version
    assert set(client.get("/v1/catalog").json()["customers"]) == {*RECORDS, "idle"}


def test_a_dry_run_tells_what_would_change_and_applies_nothing(client, clock) -> None:  # type: ignore[no-untyped-def]
    doc = with_records(client, clock)
    version = client.get("/v1/catalog").json()["version"]
    changed = {
        **doc,
        "meters": {k: v for k, v in doc["meters"].items() if k != "streaming_minutes"},
        "plans": {k: v for k, v in doc["plans"].items() if k != "connector"},
        "customers": {k: v for k, v in doc["customers"].items() if k not in ("callco", "idle")},
    }
    changed["meters"]["coedit_sessions"] = {
        **doc["meters"]["coedit_sessions"],
        "filter": {"plan": "paid"},
    }
    changed["customers"]["acme"] = {**doc["customers"]["acme"], "seats": 12}
    changed["customers"]["newco"] = {"plan": "basic"}

    for params, refused in (
        ({"dry_run": "true"}, True),
        ({"dry_run": "true", "prune": "true"}, False),
    ):
        r = client.put("/v1/catalog", params=params, json=changed)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "version": version + 1,
            "rebuilt_meters": ["coedit_sessions"],
            "dry_run": True,
            "refused": refused,
            "changes": {
                "meters": {
                    "added": [],
                    "removed": ["streaming_minutes"],
                    "changed": ["coedit_sessions"],
                },
                "plans": {"added": [], "removed": ["connector"], "changed": []},
                "customers": {
                    "added": ["newco"],
                    "removed": ["callco", "idle"],
                    "changed": ["acme"],
                },
            },
            "dropped_with_records": {"callco": RECORDS["callco"]},
        }
    assert client.get("/v1/catalog").json()["version"] == version
    assert (
        client.put(
            "/v1/catalog", params={"dry_run": "true"}, json={"plans": {"p": {"next_plan": "p"}}}
        ).status_code
        == 422
    )


def test_prune_drops_them_and_keeps_their_records_a_customer_without_any_goes_silently(
    client, clock
) -> None:  # type: ignore[no-untyped-def]
    doc = with_records(client, clock)
    without_idle = {**doc, "customers": {k: v for k, v in doc["customers"].items() if k != "idle"}}
    r = client.put("/v1/catalog", json=without_idle)
    assert r.status_code == 200, r.text
    assert (r.json()["changes"]["customers"]["removed"], r.json()["dropped_with_records"]) == (
        ["idle"],
        {},
    )

    r = client.put("/v1/catalog", params={"prune": "true"}, json={})
    assert r.status_code == 200, r.text
    assert (r.json()["dropped_with_records"], r.json()["dry_run"]) == (RECORDS, False)
    assert client.get("/v1/catalog").json()["customers"] == {}
    assert client.get("/v1/customers/callco/invoices").status_code == 404

    assert (
        client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    )  # back: with their records
    [march] = client.get("/v1/customers/callco/invoices").json()["invoices"]
    assert march["total"] == "0.05"


def test_cli_apply_refuses_to_leave_out_customers_with_records_and_tells_in_a_dry_run(
    tmp_path: Path,  # type: ignore[no-untyped-def]
    db_url: str,
) -> None:
    runner = CliRunner()
    full, empty = tmp_path / "catalog.yaml", tmp_path / "empty.yaml"
    full.write_text(yaml.safe_dump(demo_catalog()))
    empty.write_text("customers: {}\nmeters: {}\nplans: {}\n")
    assert runner.invoke(cli, ["apply", str(full), "--database-url", db_url]).exit_code == 0
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(event("session.created", "docs", at("2026-03-05T10:00:00Z"))) + "\n"
    )
    assert runner.invoke(cli, ["ingest", str(events), "--database-url", db_url]).exit_code == 0

    dry = runner.invoke(cli, ["apply", str(empty), "--dry-run", "--database-url", db_url])
    assert dry.exit_code == 1, dry.output
    assert (
        f"{empty}: valid; would be refused without --prune (dry run: nothing applied)" in dry.output
    )
    assert "  customers: - acme, - callco, - docs, - studio" in dry.output
    assert (
        "  meters: - coedit_sessions, - managed_media_hours, - media_minutes, - streaming_minutes"
        in dry.output
    )
    assert "    customers.docs: has 1 event" in dry.output

    refused = runner.invoke(cli, ["apply", str(empty), "--database-url", db_url])
    assert refused.exit_code == 1
    assert "the catalog was not applied: it leaves out 1 customer with records" in refused.output
    assert "  customers.docs: has 1 event" in refused.output

    ok = runner.invoke(cli, ["apply", str(empty), "--prune", "--dry-run", "--database-url", db_url])
    assert (ok.exit_code, "would become version 2" in ok.output) == (0, True)
    pruned = runner.invoke(cli, ["apply", str(empty), "--prune", "--database-url", db_url])
    assert pruned.exit_code == 0, pruned.output
    assert "catalog version 2 applied; dropped with their records kept: docs" in pruned.output


def test_the_catalog_schema_is_served_to_any_valid_key(client) -> None:  # type: ignore[no-untyped-def]
    from quotameter.catalog.schema import catalog_schema

    secret = demo_catalog(**{"hidden-customer-7": {"plan": "basic", "owner": "x@hidden.example"}})
    assert client.put("/v1/catalog", json=secret).status_code == 200
    ingest = client.post("/v1/keys", json={"role": "ingest"}).json()["key"]
    customer = client.post("/v1/keys", json={"role": "customer", "customer": "acme"}).json()["key"]
    for key in (None, ingest, customer):  # None: the client's admin key
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        r = client.get("/v1/catalog/schema", headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/schema+json"
        assert r.json() == catalog_schema()
        assert r.json()["$id"] == "https://quotameter.dev/catalog.schema.json"
        # The format only: nothing of this service's own catalog.
        assert "hidden" not in r.text
    r = client.get("/v1/catalog/schema", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.json()["error"].startswith("authorization: ")
