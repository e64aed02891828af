"""`simulate`: a candidate catalog run against the recorded events next to the one in force,
stored nowhere (both databases), and its CLI."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import Engine
from typer.testing import CliRunner

from quotameter.catalog.service import CatalogCache
from quotameter.context import Context
from quotameter.entitlements.service import balance
from quotameter.usecases.simulate import simulate
from support import at, event, fresh_catalog, ingest_batches

D = Decimal
NOW = at("2026-03-20T12:00:00Z")


def catalog(limit: int, price: str, kinds: list[str] | None = None) -> dict[str, Any]:
    meter: dict[str, Any] = {"event_type": "api.call", "aggregation": "count", "unit": "call"}
    if kinds:
        meter["filter"] = {"kind": kinds}
    return {
        "meters": {"calls": meter},
        "plans": {
            "small": {
                "entitlements": {
                    "calls": {
                        "meter": "calls",
                        "allowance": {"fixed": limit},
                        "enforcement": "hard",
                    }
                },
                "prices": [
                    {"type": "flat", "amount": "10.00"},
                    {"type": "unit", "feature": "calls", "unit_price": price},
                ],
            }
        },
        "customers": {"ana": {"plan": "small"}, "ben": {"plan": "small"}},
    }


def calls(customer: str, n: int, kind: str = "read") -> list[dict[str, Any]]:
    """`n` calls, one an hour from 2 March 00:00."""
    start = at("2026-03-02T00:00:00Z")
    return [event("api.call", customer, start + timedelta(hours=k), kind=kind) for k in range(n)]


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    fresh_catalog(engine, catalog(10, "0.10"))
    with engine.connect() as conn:
        current = CatalogCache().current(conn)
    ingest_batches(engine, current, [calls("ana", 15), calls("ben", 4, kind="write")])
    return engine


def test_a_candidate_is_priced_next_to_the_catalog_in_force_and_nothing_is_kept(
    loaded: Engine,
) -> None:
    candidate = catalog(20, "0.50", kinds=["read"])  # a redefined meter: ben's writes drop out
    del candidate["customers"]["ben"]
    candidate["customers"]["cleo"] = {"plan": "small"}
    found = simulate(loaded, candidate, NOW)

    by = {r.customer: r for r in found.customers}
    assert sorted(by) == ["ana", "ben", "cleo"]
    ana = by["ana"]
    assert ana.old is not None and ana.new is not None
    assert (ana.old.features["calls"].usage, ana.new.features["calls"].usage) == (D(15), D(15))
    # the 10th call (2 March 09:00) used up the old allowance of 10: refused from then on
    assert ana.old.features["calls"].blocked_at == at("2026-03-02T09:00:00Z")
    assert ana.new.features["calls"].blocked_at is None
    assert (ana.old.total, ana.new.total) == (D("11.50"), D("17.50"))
    assert ana.change == D("6.00")
    ben = by["ben"]
    assert ben.new is None and ben.old is not None and ben.old.total == D("10.40")
    cleo = by["cleo"]
    assert cleo.old is None and cleo.new is not None
    assert cleo.new.features["calls"].usage == 0 and cleo.new.total == D("10.00")
    assert found.totals() == {"USD": (D("21.90"), D("27.50"))}

    # nothing applied: the same catalog version, the same usage as before
    with loaded.connect() as conn:
        current = CatalogCache().current(conn)
        assert current.version == 1 and "cleo" not in current.spec.customers
        ben_now = balance(Context(conn, current), "ben", "calls", NOW)
    assert ben_now.usage == 4


def test_a_range_of_several_periods_sums_their_invoices(loaded: Engine) -> None:
    found = simulate(loaded, catalog(10, "0.10"), NOW, start=at("2026-01-10T00:00:00Z"), end=NOW)
    ana = next(r for r in found.customers if r.customer == "ana")
    assert ana.old is not None and ana.new is not None
    # January, February (fees only) and March so far
    assert ana.old.total == ana.new.total == D("31.50")
    assert ana.change == 0


runner = CliRunner()


def test_the_cli_prints_a_table_json_and_csv(tmp_path: Path, monkeypatch: Any) -> None:
    url = f"sqlite:///{tmp_path / 'sim.sqlite3'}"
    monkeypatch.setenv("QUOTAMETER_DATABASE_URL", url)
    monkeypatch.setattr("quotameter.cli.system_clock", lambda: NOW)
    from quotameter import cli
    from quotameter.cli import app

    monkeypatch.setattr(cli.console, "width", 200)  # whole rows, as on a wide terminal

    (tmp_path / "now.yaml").write_text(yaml.safe_dump(catalog(10, "0.10")))
    assert runner.invoke(app, ["apply", str(tmp_path / "now.yaml")]).exit_code == 0
    (tmp_path / "e.jsonl").write_text(
        "".join(orjson.dumps(e).decode() + "\n" for e in calls("ana", 15))
    )
    assert runner.invoke(app, ["ingest", str(tmp_path / "e.jsonl")]).exit_code == 0
    (tmp_path / "cand.yaml").write_text(yaml.safe_dump(catalog(20, "0.50")))

    table = runner.invoke(app, ["simulate", str(tmp_path / "cand.yaml")])
    assert table.exit_code == 0, table.output
    assert "2026-03-02T09:00:00Z → no" in table.output
    assert "11.50 USD → 17.50 USD" in table.output and "+6.00 USD" in table.output
    assert "revenue: 21.50 USD → 27.50 USD (+6.00 USD)" in table.output

    out = runner.invoke(app, ["simulate", str(tmp_path / "cand.yaml"), "--format", "json"])
    body = orjson.loads(out.stdout)
    assert body["revenue"] == {"USD": {"old": "21.50", "new": "27.50", "change": "6.00"}}
    ana = next(c for c in body["customers"] if c["customer"] == "ana")
    assert ana["old"]["features"]["calls"]["blocked_at"] == "2026-03-02T09:00:00Z"

    out = runner.invoke(app, ["simulate", str(tmp_path / "cand.yaml"), "--format", "csv"])
    rows = out.stdout.splitlines()
    assert rows[0].startswith("customer,feature,plan_old,plan_new,usage_old,usage_new")
    assert "ana,,small,small,,,,,,,11.50,17.50,6.00,USD" in rows
    assert "ana,calls,small,small,15,15,5,0,2026-03-02T09:00:00Z,,,,,USD" in rows

    ranged = runner.invoke(
        app,
        [
            "simulate",
            str(tmp_path / "cand.yaml"),
            "--from",
            "2026-03-01T00:00:00Z",
            "--to",
            "2026-03-02T05:00:00Z",
        ],
        terminal_width=200,
    )
    assert ranged.exit_code == 0 and "6 calls" in ranged.output

    bad = runner.invoke(app, ["simulate", str(tmp_path / "cand.yaml"), "--format", "xml"])
    assert bad.exit_code == 1 and "format: must be table, json or csv" in bad.output
    (tmp_path / "broken.yaml").write_text("plans: {p: {prices: [{type: bulk}]}}\n")
    broken = runner.invoke(app, ["simulate", str(tmp_path / "broken.yaml")])
    assert broken.exit_code == 1 and "plans.p.prices[0].type" in broken.output
    backwards = runner.invoke(
        app,
        [
            "simulate",
            str(tmp_path / "cand.yaml"),
            "--from",
            "2026-03-10T00:00:00Z",
            "--to",
            "2026-03-01T00:00:00Z",
        ],
    )
    assert backwards.exit_code == 1 and "from: must be before to" in backwards.output
