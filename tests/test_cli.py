"""The `quotameter` command against a real SQLite file: apply, ingest, balance, keys, usage,
invoices."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from quotameter.cli import app
from support import at, demo_catalog, event, stream

runner = CliRunner()
# The commands' clock, where they read the real one: a fixed instant, so that what they stamp
# and what they find due is the same whatever day the tests run.
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr("quotameter.cli.system_clock", lambda: NOW)
    return NOW


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("QUOTAMETER_DATABASE_URL", url)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(demo_catalog()))
    result = runner.invoke(app, ["apply", str(catalog)])
    assert result.exit_code == 0, result.output
    return url


def test_ingest_reports_every_rejected_line_and_keeps_the_rest(db: str, tmp_path: Path) -> None:
    good = [
        *stream(
            "media.activity",
            "acme",
            _t("09:00"),
            _t("09:27"),
            user="ana",
            stream="mic-1",
            kind="mic",
        ),
        event("session.created", "docs", _t("10:00")),
    ]
    lines = [orjson.dumps(e).decode() for e in good]
    lines.insert(1, "{not json")  # line 2
    lines.append(orjson.dumps(event("session.created", "ghost", _t("10:00"))).decode())  # line 5
    lines.append("")  # skipped
    lines.append(lines[0])  # line 7: a repeat
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join(lines) + "\n")

    result = runner.invoke(app, ["ingest", str(file), "--batch", "2"])
    assert result.exit_code == 1  # something was rejected
    out = result.output
    assert "3 accepted, 1 duplicates, 2 rejected" in out, out
    assert re.search(r"line 2: line: not valid JSON", out), out
    assert "line 5: subject: unknown customer 'ghost'" in out, out

    result = runner.invoke(app, ["balance", "acme", "media", "--at", "2026-03-10T12:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "acme / media: 27 minute" in result.output
    result = runner.invoke(app, ["ingest", str(file)])  # again: nothing counted twice
    assert "0 accepted, 4 duplicates, 2 rejected" in result.output


def test_keys_are_made_listed_and_revoked(db: str) -> None:
    result = runner.invoke(
        app, ["keys", "create", "customer", "--customer", "acme", "--label", "dashboard"]
    )
    assert result.exit_code == 0, result.output
    key_id, secret = re.search(
        r"(key_[0-9a-f]+) \(customer, acme\)\n(qm_\S+)", result.output
    ).groups()  # type: ignore[union-attr]
    listed = runner.invoke(app, ["keys", "list"]).output
    assert key_id in listed and "dashboard" in listed and secret not in listed
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert (
        runner.invoke(app, ["keys", "revoke", "key_missing"]).output.strip()
        == "id: unknown key 'key_missing'"
    )
    result = runner.invoke(app, ["keys", "create", "customer", "--customer", "ghost"])
    assert (result.exit_code, result.output.strip()) == (1, "customer: unknown customer 'ghost'")


def _t(hhmm: str) -> str:
    return f"2026-03-10T{hhmm}:00Z"


def test_usage_shows_who_used_how_much_and_when(db: str, tmp_path: Path) -> None:
    events = [
        *stream(
            "media.activity",
            "acme",
            _t("09:00"),
            _t("09:27"),
            user="ana",
            stream="mic-1",
            kind="mic",
        ),
        *stream(
            "media.activity",
            "acme",
            _t("09:10"),
            _t("09:20"),
            user="ana",
            stream="cam-1",
            kind="camera",
        ),
        *stream(
            "media.activity",
            "acme",
            _t("11:00"),
            _t("11:57"),
            user="bo",
            stream="mic-2",
            kind="mic",
        ),
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    assert runner.invoke(app, ["ingest", str(file)]).exit_code == 0

    march = ["--from", "2026-03-01T00:00:00Z", "--to", "2026-04-01T00:00:00Z"]
    result = runner.invoke(app, ["usage", "acme", "media", "--group-by", "user", *march])
    assert result.exit_code == 0, result.output
    assert "acme / media: 84 minute" in result.output, result.output  # 27 (mic + camera once) + 57
    rows = {
        line.split()[0]: line.split()[-1]
        for line in result.output.splitlines()
        if line.strip().startswith(("ana", "bo"))
    }
    assert rows == {"ana": "27", "bo": "57"}, result.output

    result = runner.invoke(app, ["usage", "acme", "media", "--window", "day", *march])
    assert re.search(r"2026-03-10T00:00:00Z\s+84", result.output), result.output

    result = runner.invoke(app, ["usage", "acme", "media", "--window", "week"])
    assert (
        result.exit_code == 1 and "window: must be day, hour or month (got 'week')" in result.output
    )
    result = runner.invoke(app, ["usage", "acme", "volume"])
    assert result.exit_code == 1 and "feature:" in result.output


def test_invoices_table_json_csv_and_finalize_due(db: str, tmp_path: Path) -> None:
    events = [
        event("media.volume", "studio", at("2026-02-20T00:00:00Z"), hours_delta=30),
        event("media.volume", "studio", at("2026-02-25T00:00:00Z"), hours_delta=-10),
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    assert runner.invoke(app, ["ingest", str(file)]).exit_code == 0
    when = ["--at", "2026-03-01T00:00:00Z"]
    result = runner.invoke(app, ["invoices", "studio", *when])
    assert result.exit_code == 0, result.output
    assert "studio-20260215 (upcoming)" in result.output
    assert (
        "5 hours over the limit" in result.output
        and "100.00" in result.output
        and "399.00" in result.output
    )
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "json"])
    assert orjson.loads(out.output)["total"] == "399.00"
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "csv"])
    assert out.output.splitlines()[-1].endswith(",total,total,,,,399.00")
    # the run's clock is 1 April: February's cycle and its grace day are over, so
    # --finalize-due freezes it
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "json", "--finalize-due"])
    assert out.exit_code == 0 and orjson.loads(out.output.splitlines()[-1])["status"] == "finalized"
    assert (
        "1 invoice(s) finalized" in out.output
    )  # February's cycle; March's is not over by 1 April
    bad = runner.invoke(app, ["invoices", "studio", "--format", "xml"])
    assert bad.exit_code == 1 and "format: must be table, json or csv" in bad.output


def test_demo_refuses_a_clock_that_is_not_an_instant_and_touches_nothing(tmp_path: Path) -> None:
    kept = tmp_path / "demo.sqlite3"
    kept.write_text("someone's file")
    result = runner.invoke(
        app, ["demo", "--now", "2026-11-20 15:00", "--no-serve", "--database", str(kept)]
    )
    assert (result.exit_code, result.output.strip()) == (
        1,
        "now: not an RFC 3339 timestamp ('2026-11-20 15:00')",
    ), result.output
    assert kept.read_text() == "someone's file"
