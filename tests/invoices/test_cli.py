"""`quotameter invoices` against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from quotameter.cli import app
from support import at, demo_catalog, event

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("QUOTAMETER_DATABASE_URL", url)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(demo_catalog()))
    assert runner.invoke(app, ["apply", str(catalog)]).exit_code == 0
    events = [event("media.volume", "studio", at("2026-02-20T00:00:00Z"), hours_delta=30),
              event("media.volume", "studio", at("2026-02-25T00:00:00Z"), hours_delta=-10)]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    assert runner.invoke(app, ["ingest", str(file)]).exit_code == 0
    return url


def test_invoices_table_json_csv(db: str) -> None:
    when = ["--at", "2026-03-01T00:00:00Z"]
    result = runner.invoke(app, ["invoices", "studio", *when])
    assert result.exit_code == 0, result.output
    assert "studio-20260215 (upcoming)" in result.output
    assert "5 hour over the limit" in result.output and "100.00" in result.output and "399.00" in result.output
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "json"])
    assert orjson.loads(out.output)["total"] == "399.00"
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "csv"])
    assert out.output.splitlines()[-1].endswith(",total,total,,,,399.00")
    # the run's clock is now: February's cycle is long over, so --finalize-due freezes it
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "json", "--finalize-due"])
    assert out.exit_code == 0 and orjson.loads(out.output.splitlines()[-1])["status"] == "finalized"
    bad = runner.invoke(app, ["invoices", "studio", "--format", "xml"])
    assert bad.exit_code == 1 and "format: must be table, json or csv" in bad.output
