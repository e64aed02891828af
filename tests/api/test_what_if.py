"""What if: the period so far priced on another plan, with the same events, seats and grants,
through the API (both databases) and the CLI."""

from __future__ import annotations

from typing import Any

from support import ADMIN, at, event

CATALOG = {
    "meters": {"calls": {"event_type": "api.call", "aggregation": "count", "unit": "call"}},
    "plans": {
        "small": {
            "entitlements": {"calls": {"meter": "calls", "allowance": {"fixed": 100}}},
            "prices": [
                {"type": "flat", "amount": "10.00"},
                {"type": "unit", "feature": "calls", "unit_price": "0.10"},
            ],
        },
        "big": {
            "entitlements": {"calls": {"meter": "calls", "allowance": {"fixed": 1000}}},
            "prices": [
                {"type": "flat", "amount": "50.00"},
                {"type": "per_seat", "amount": "1.00"},
                {
                    "type": "volume",
                    "feature": "calls",
                    "tiers": [{"up_to": 10, "unit_price": "0.05"}, {"unit_price": "0.02"}],
                },
            ],
        },
    },
    "customers": {"kite": {"plan": "small", "seats": 3}},
}


def lines(invoice: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


def test_another_plan_prices_the_same_period_and_stores_nothing(client: Any, clock: Any) -> None:
    clock.now = at("2026-03-21T00:00:00Z")
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    calls = [event("api.call", "kite", at("2026-03-05T10:00:00Z")) for _ in range(30)]
    assert client.post("/v1/events", json=calls, headers=ADMIN).json()["accepted"] == 30
    moved = client.post(
        "/v1/customers/kite/subscription",
        json={"plan": "big", "effective_at": "2026-03-11T00:00:00Z"},
    )
    assert moved.status_code == 200, moved.text
    real = client.get("/v1/customers/kite/invoices/upcoming").json()
    assert real["hypothetical"] is False and real["plan"] == "big"
    # small's fee from the start, the prorated difference to big, usage priced on big
    assert [kind for kind, _ in lines(real)] == ["flat", "proration", "volume"]

    small = client.get("/v1/customers/kite/invoices/upcoming", params={"plan": "small"}).json()
    assert small["hypothetical"] is True and small["plan"] == "small"
    assert lines(small) == [("flat", "10.00"), ("unit", "3.00")]  # no proration: small all along
    assert small["total"] == "13.00" and small["period"] == real["period"]

    big = client.get("/v1/customers/kite/invoices/upcoming", params={"plan": "big"}).json()
    # 50.00 + 3 seats + 30 calls all at the second tier's 0.02
    assert lines(big) == [("flat", "50.00"), ("per_seat", "3.00"), ("volume", "0.60")]
    assert big["total"] == "53.60"

    # nothing stored: the plan history and the real invoice are as before
    history = client.get("/v1/customers/kite").json()["plan_changes"]
    assert [h["plan"] for h in history] == ["big"]
    assert client.get("/v1/customers/kite/invoices/upcoming").json() == real

    bad = client.get("/v1/customers/kite/invoices/upcoming", params={"plan": "gold"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("plan: unknown plan 'gold'")
    html = client.get("/v1/customers/kite/invoices/upcoming?plan=small&format=html")
    assert html.status_code == 200 and "13.00" in html.text


def test_the_cli_prices_a_customer_on_another_plan(tmp_path: Any, monkeypatch: Any) -> None:
    import orjson
    import yaml
    from typer.testing import CliRunner

    from quotameter.cli import app

    runner = CliRunner()
    monkeypatch.setattr("quotameter.cli.system_clock", lambda: at("2026-03-21T00:00:00Z"))
    monkeypatch.setenv("QUOTAMETER_DATABASE_URL", f"sqlite:///{tmp_path / 'w.sqlite3'}")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CATALOG))
    assert runner.invoke(app, ["apply", str(tmp_path / "c.yaml")]).exit_code == 0
    calls = [event("api.call", "kite", at("2026-03-05T10:00:00Z")) for _ in range(30)]
    (tmp_path / "e.jsonl").write_text("".join(orjson.dumps(c).decode() + "\n" for c in calls))
    assert runner.invoke(app, ["ingest", str(tmp_path / "e.jsonl")]).exit_code == 0
    table = runner.invoke(app, ["invoices", "kite", "--plan", "big"])
    assert table.exit_code == 0, table.output
    assert "(what if)" in table.output and "plan big" in table.output and "53.60" in table.output
    out = runner.invoke(app, ["invoices", "kite", "--plan", "big", "--format", "json"])
    assert orjson.loads(out.stdout)["hypothetical"] is True
    bad = runner.invoke(app, ["invoices", "kite", "--plan", "gold"])
    assert bad.exit_code == 1 and "plan: unknown plan 'gold'" in bad.output
