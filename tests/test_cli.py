"""The `quotameter` command against a real SQLite file: apply, ingest, balance, keys, usage,
invoices, and the line on stderr that says which database a command opened."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from quotameter.cli import app
from support import ADMIN, ADMIN_KEY, at, demo_catalog, event, stream

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
    url = f"sqlite:///{(tmp_path / 'cli.sqlite3').resolve()}"
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
    assert "3 accepted, 1 duplicate, 2 rejected" in out, out
    assert result.stderr == f"database: {db}\n", result.stderr  # no bar when piped
    assert re.search(r"line 2: line: not valid JSON", out), out
    assert "line 5: subject: unknown customer 'ghost'" in out, out

    result = runner.invoke(app, ["balance", "acme", "media", "--at", "2026-03-10T12:00:00Z"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  usage +27 minutes$", result.stdout, re.M), result.stdout
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
    result = runner.invoke(app, ["keys", "revoke", "key_missing"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"database: {db}\nid: unknown key 'key_missing'\n",
    )
    result = runner.invoke(app, ["keys", "create", "customer", "--customer", "ghost"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"database: {db}\ncustomer: unknown customer 'ghost'\n",
    )


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
    # 27 (mic + camera once) + 57
    assert "acme / media: 84 minutes from 2026-03-01T00:00:00Z" in result.output, result.output
    assert re.search(r"^ *user +minutes *$", result.stdout, re.M), result.stdout
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
    assert orjson.loads(out.stdout)["total"] == "399.00"  # the database line is on stderr
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "csv"])
    assert out.stdout.splitlines()[-1].endswith(",total,total,,,,399.00")
    # the run's clock is 1 April: February's cycle and its grace day are over, so
    # --finalize-due freezes it
    out = runner.invoke(app, ["invoices", "studio", *when, "--format", "json", "--finalize-due"])
    assert out.exit_code == 0 and orjson.loads(out.output.splitlines()[-1])["status"] == "finalized"
    # February's cycle; March's is not over by 1 April
    assert out.stderr == f"database: {db}\n1 invoice finalized\n", out.stderr
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


def _apply(tmp_path: Path, **extra_customers: dict[str, object]) -> None:
    """Put the demo catalog, with these customers added, in force."""
    catalog = tmp_path / "more.yaml"
    catalog.write_text(yaml.safe_dump(demo_catalog(**extra_customers)))
    result = runner.invoke(app, ["apply", str(catalog)])
    assert result.exit_code == 0, result.output


def _ingest(tmp_path: Path, events: list[dict[str, object]]) -> None:
    file = tmp_path / "events.jsonl"
    file.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    result = runner.invoke(app, ["ingest", str(file)])
    assert result.exit_code == 0, result.output


def test_balance_prints_every_figure_with_its_unit(db: str, tmp_path: Path) -> None:
    solo = {"plan": "basic", "seats": 1, "admins": ["ops@solo.example"], "timezone": "UTC"}
    _apply(tmp_path, solo=solo, free={"plan": "unlimited", "timezone": "UTC"})
    long_call = ("2026-03-01T00:00:00Z", "2026-03-04T03:26:00Z")  # 3 days and 206 minutes
    _ingest(
        tmp_path,
        [
            *(
                e
                for customer in ("acme", "solo", "free")
                for e in stream(
                    "media.activity", customer, *long_call, user="ana", stream="m", kind="mic"
                )
            ),
            event("media.volume", "studio", at("2026-02-20T00:00:00Z"), hours_delta=30.25),
            event("media.volume", "studio", at("2026-02-25T00:00:00Z"), hours_delta=-10),
        ],
    )
    march = ["--at", "2026-03-10T12:00:00Z"]

    result = runner.invoke(app, ["balance", "acme", "media", *march])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "acme / media at 2026-03-10T12:00:00Z\n"
        "  plan        basic\n"
        "  meter       media_minutes\n"
        "  period      2026-03-01T00:00:00Z … 2026-04-01T00:00:00Z\n"
        "  usage       4,526 minutes\n"
        "  included    5,000 minutes\n"  # 500 a seat, 10 seats
        "  granted     0 minutes\n"
        "  limit       5,000 minutes\n"
        "  remaining   474 minutes\n"
        "  overage     0 minutes\n"
        "  hard limit  5,000 minutes\n"
        "  has access  yes\n"
    ), result.stdout
    assert result.stderr == f"database: {db}\n"

    solo_out = runner.invoke(app, ["balance", "solo", "media", *march]).stdout
    for line in ("limit       500 minutes", "remaining   0 minutes", "has access  no (blocked)"):
        assert f"\n  {line}\n" in solo_out, solo_out

    free_out = runner.invoke(app, ["balance", "free", "media", *march]).stdout
    for line in (
        "usage       4,526 minutes",
        "included    unlimited",
        "limit       none",
        "remaining   unlimited",
        "hard limit  none (never blocked)",
        "has access  yes",
    ):
        assert f"\n  {line}\n" in free_out, free_out

    result = runner.invoke(app, ["balance", "studio", "managed_media", *march])
    assert result.stdout == (
        "studio / managed_media at 2026-03-10T12:00:00Z\n"
        "  plan        pro\n"
        "  meter       managed_media_hours\n"
        "  period      2026-02-15T00:00:00Z … 2026-03-15T00:00:00Z\n"
        "  usage       30.25 hours (the period's highest level)\n"
        "  level       20.25 hours now\n"
        "  included    25 hours\n"
        "  granted     0 hours\n"
        "  limit       25 hours\n"
        "  remaining   0 hours\n"  # usage, the highest level, is past the limit
        "  overage     5.25 hours\n"
        "  hard limit  40 hours\n"
        "  has access  yes\n"
    ), result.stdout

    result = runner.invoke(app, ["balance", "acme", "media", "--format", "xml"])
    assert (result.exit_code, result.stderr) == (
        1,
        f"database: {db}\nformat: must be text or json (got 'xml')\n",
    )


def test_balance_as_json_is_what_the_api_answers(db: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from quotameter.server import create_app
    from quotameter.settings import Settings

    _ingest(
        tmp_path,
        [
            event("media.volume", "studio", at("2026-02-20T00:00:00Z"), hours_delta=30.25),
            event("media.volume", "studio", at("2026-02-25T00:00:00Z"), hours_delta=-10),
            *stream(
                "media.activity", "acme", _t("09:00"), _t("09:27"), user="a", stream="m", kind="mic"
            ),
        ],
    )
    settings = Settings(database_url=db, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY)
    served = create_app(settings, clock=lambda: NOW)
    try:
        with TestClient(served, headers=ADMIN) as client:
            for customer, feature in (("studio", "managed_media"), ("acme", "media")):
                when = "2026-03-10T12:00:00Z"
                answer = client.get(
                    f"/v1/customers/{customer}/entitlements/{feature}", params={"at": when}
                )
                assert answer.status_code == 200, answer.text
                result = runner.invoke(
                    app, ["balance", customer, feature, "--at", when, "--format", "json"]
                )
                assert result.exit_code == 0, result.output
                assert result.stdout == answer.text + "\n"
                assert result.stderr == f"database: {db}\n"
    finally:
        served.state.services.engine.dispose()


@pytest.mark.parametrize(
    "command",
    [
        ["balance", "docs", "sessions", "--format", "json"],
        ["invoices", "docs", "--format", "json"],
        ["usage", "docs", "sessions"],
    ],
    ids=["balance", "invoices", "usage"],
)
def test_a_read_settles_what_the_customer_owes_first_as_the_api_does(
    db: str, tmp_path: Path, command: list[str]
) -> None:
    """Usage ingested since the customer's last evaluation may have crossed an auto-upgrade:
    the command makes that evaluation before it reads, so it shows the plan the API would."""
    from sqlalchemy import create_engine

    from quotameter.customers.service import plan_history

    small = demo_catalog()
    small["plans"]["sessions_100k"]["entitlements"]["sessions"]["allowance"] = {"fixed": 3}
    catalog = tmp_path / "small.yaml"
    catalog.write_text(yaml.safe_dump(small))
    assert runner.invoke(app, ["apply", str(catalog)]).exit_code == 0
    _ingest(  # `ingest` stores only: the customer owes an evaluation
        tmp_path,
        [event("session.created", "docs", f"2026-04-01T0{h}:00:00Z") for h in range(5)],
    )
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            moved = [(h.plan, h.reason) for h in plan_history(conn, "docs")][-1]
    finally:
        engine.dispose()
    assert moved == ("sessions_200k", "auto_upgrade")  # past 3 sessions: moved up
    if "--format" in command:
        assert orjson.loads(result.stdout)["plan"] == "sessions_200k"


def test_a_command_says_which_database_it_opened_and_when_it_made_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUOTAMETER_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    (here / "quotameter-demo.sqlite3").write_bytes(b"")  # what `quotameter demo` left here

    result = runner.invoke(app, ["keys", "list"])  # the default: ./quotameter.sqlite3
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"database: sqlite:///{here}/quotameter.sqlite3\n"
        f"database: {here}/quotameter.sqlite3 did not exist; a new, empty database was made "
        "there. To open another, pass --database-url or set QUOTAMETER_DATABASE_URL (the "
        f"demo's is --database-url sqlite:///{here}/quotameter-demo.sqlite3).\n"
    ), result.stderr
    result = runner.invoke(app, ["keys", "list"])  # it is there now: nothing more to say
    assert result.stderr == f"database: sqlite:///{here}/quotameter.sqlite3\n", result.stderr

    result = runner.invoke(app, ["keys", "list", "--database-url", "sqlite:///sub/other.db"])
    assert result.stderr == (
        f"database: sqlite:///{here}/sub/other.db\n"
        f"database: {here}/sub/other.db did not exist; a new, empty database was made there. "
        "To open another, pass --database-url or set QUOTAMETER_DATABASE_URL.\n"
    ), result.stderr


def test_the_database_line_hides_a_postgresql_password(pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(password="s3cret")  # trust authentication: any password does
    result = runner.invoke(
        app, ["keys", "list", "--database-url", url.render_as_string(hide_password=False)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"database: {url.render_as_string(hide_password=True)}\n"
    assert "s3cret" not in result.output
