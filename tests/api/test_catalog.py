"""PUT /v1/catalog and `quotameter apply`: all or nothing, every error named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from typer.testing import CliRunner

from quotameter.cli import app as cli
from support import at, demo_catalog, event


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
    client.post("/v1/events", json=[
        event("session.created", "docs", t, plan="free"), event("session.created", "docs", t, plan="paid"),
        event("session.created", "docs", t, plan="paid")])
    changed = demo_catalog()
    changed["meters"]["coedit_sessions"]["filter"] = {"plan": "paid"}
    r = client.put("/v1/catalog", json=changed)
    assert r.json() == {"version": 2, "rebuilt_meters": ["coedit_sessions"]}
    usage = client.get("/v1/customers/docs/entitlements/sessions", params={"at": "2026-03-11T00:00:00Z"})
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

    result = runner.invoke(cli, ["balance", "acme", "media", "--at", "2026-03-05T00:00:00Z", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "acme / media: 0 minute in 2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z" in result.output


def test_names_end_where_the_text_ends_and_addresses_hold_no_control_character(client) -> None:  # type: ignore[no-untyped-def]
    bad = demo_catalog()
    bad["customers"]["acme\n"] = bad["customers"].pop("acme")
    bad["plans"]["basic\n"] = bad["plans"]["basic"]
    bad["meters"]["coedit_sessions\n"] = bad["meters"]["coedit_sessions"]
    bad["plans"]["pro"]["entitlements"]["managed_media\n"] = bad["plans"]["pro"]["entitlements"]["managed_media"]
    bad["customers"]["studio"]["owner"] = "owner@studio.example\n"
    bad["customers"]["docs"]["admins"] = ["ops@docs.example", "o\x01ps@docs.example", "ops@docs.\x7fexample",
                                          "ops@docs.example\x85"]
    bad["meters"]["media_minutes"]["event_type"] = "media.\x00activity"  # was a 500 on PostgreSQL
    r = client.put("/v1/catalog", json=bad)
    assert r.status_code == 422, r.text
    invalid_name = "use letters, digits and _ . : -, starting with a letter or digit, at most 128 characters"
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
    for change in ({"admins": ["ops@acme.example\n"]}, {"owner": "o\x00wner@acme.example"},
                   {"members": ["ok@acme.example", "m\x1b@acme.example"]}):
        r = client.patch("/v1/customers/acme", json=change)
        assert r.status_code == 422, (change, r.text)
        field = next(iter(change))
        assert r.json()["error"].startswith(f"{field}") and "not an e-mail address" in r.json()["error"], r.text
    assert client.get("/v1/customers/acme").json()["admins"] == ["ops@acme.example"]
