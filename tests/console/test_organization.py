"""The organization page on both databases: every section with the numbers of a customer
whose events are known, another organization's page hidden from a customer key, and a
finalized invoice's printable page by number."""

from __future__ import annotations

import re
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from quotameter.console import charts
from support import at, demo_catalog, event, stream


def make_key(client: Any, role: str, customer: str) -> tuple[str, str]:
    made = client.post("/v1/keys", json={"role": role, "customer": customer})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


def sign_in(browser: Any, key: str) -> Any:
    form = browser.get("/")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token, form.text
    return browser.post("/", data={"csrf": token.group(1), "key": key})


@pytest.fixture
def browser(app: Any) -> Any:
    with TestClient(app, follow_redirects=False) as c:  # no key header: a browser
        yield c


@pytest.fixture
def demo(client: Any, clock: Any) -> Any:
    doc = demo_catalog()
    doc["customers"]["acme"]["seats"] = 1  # 500 minutes, blocked at 500
    assert client.put("/v1/catalog", json=doc).status_code == 200
    clock.now = at("2026-03-10T12:00:00Z")
    media = [
        ("u1", "mic", "2026-03-02T09:00:00Z", "2026-03-02T11:00:00Z"),  # 120 min
        ("u2", "camera", "2026-03-05T10:00:00Z", "2026-03-05T14:30:00Z"),  # 270 min
        ("u1", "screen", "2026-03-09T09:00:00Z", "2026-03-09T10:40:00Z"),  # 100 min
    ]
    events: list[dict[str, Any]] = []
    for user, kind, start, end in media:
        events += stream(
            "media.activity",
            "acme",
            at(start),
            at(end),
            user=user,
            stream=f"{user}/{kind}",
            kind=kind,
        )
    # studio's managed volume: 30 h on 20 Feb, 10 h fewer on 1 Mar: peaked 5 h past the 25
    events += [
        event("media.volume", "studio", at("2026-02-20T08:00:00Z"), hours_delta=30),
        event("media.volume", "studio", at("2026-03-01T08:00:00Z"), hours_delta=-10),
    ]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    return client


def page_of(browser: Any, key: str, path: str) -> str:
    assert sign_in(browser, key).status_code == 303
    got = browser.get(path)
    assert got.status_code == 200, got.text
    return unescape(got.text)


def section(html: str, ident: str) -> str:
    found = re.search(rf'<section[^>]*id="{ident}".*?</section>', html, re.S)
    assert found, ident
    return found.group(0)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def test_every_section_of_acmes_page_with_its_numbers(demo: Any, browser: Any) -> None:
    _, key = make_key(demo, "customer", "acme")
    html = page_of(browser, key, "/console/customers/acme")
    card = section(html, "feature-media")
    words = text_of(card)
    # the bar, as text and as an image with the same words
    assert "490 of 500 minutes" in words
    assert 'role="img" aria-label="490 of 500 minutes"' in card
    assert "<title>490 of 500 minutes</title>" in card
    assert 'class="seg-included"' in card and 'class="seg-used"' in card
    assert card.count('class="mark-threshold"') == 3  # 85, 90 and 95 %
    assert 'class="mark-hard-limit"' in card
    # the numbers
    assert "Remaining 10 minutes" in words
    assert "Period 1 Mar 2026 – 31 Mar 2026" in words
    assert "Resets 1 Apr 2026, 00:00 UTC" in words
    # the state: 98 % used, past the first notice level (85 %)
    assert "State Near the limit" in words
    # 490 minutes in 228 hours: 10 more take 4.65 hours
    assert "Forecast runs out around 10 Mar 2026" in words
    assert '<time datetime="2026-03-10T16:39:12+00:00">' in card
    # the members, most minutes first, and their total equals the balance's usage
    members = re.search(r'<table class="data org-members".*?</table>', card, re.S)
    assert members
    assert re.findall(
        r"<tr><td>(u\d)</td><td class=\"num\"[^>]*>([^<]+)</td>", members.group(0)
    ) == [
        ("u2", "270 minutes"),
        ("u1", "220 minutes"),
    ]
    assert "Total 490 minutes" in text_of(members.group(0))
    assert 'href="?members=name#members-media"' in card
    # the days: a bar with its title per day, and the same numbers in a table
    assert "<title>2 Mar 2026: 120 minutes</title>" in card
    assert "<title>5 Mar 2026: 270 minutes</title>" in card
    assert "<title>3 Mar 2026: 0 minutes</title>" in card
    days = re.search(r"<details.*?</details>", card, re.S)
    assert days and "9 Mar 2026 100 minutes" in text_of(days.group(0))
    # the history: the three notice levels, in words, in the customer's zone
    history = text_of(section(html, "history"))
    for level in ("85", "90", "95"):
        assert f"media: {level} % of the allowance used (490 of 500 minutes)" in history
    assert "10 Mar 2026, 12:00 UTC" in history
    # the running invoice (basic has no prices) and no finalized one yet
    invoices = text_of(section(html, "invoices"))
    assert "Running: 1 Mar 2026 – 31 Mar 2026" in invoices
    assert "Total so far $0.00" in invoices and "No finalized invoice yet." in invoices
    # what the other parts of the page build on
    assert 'id="feature-media"' in html and "/console/static/console.js" in html


def test_members_sort_by_name_with_links_that_keep_the_other_order(demo: Any, browser: Any) -> None:
    _, key = make_key(demo, "customer", "acme")
    html = page_of(browser, key, "/console/customers/acme?members=name")
    card = section(html, "feature-media")
    assert re.findall(r"<tr><td>(u\d)</td>", card) == ["u1", "u2"]
    assert 'aria-sort="ascending"' in card
    wrong = browser.get("/console/customers/acme?members=size")
    assert wrong.status_code == 422 and "members: sort by usage or name" in unescape(wrong.text)


def test_a_blocked_feature_says_since_when(demo: Any, browser: Any, clock: Any) -> None:
    r = demo.post(
        "/v1/events",
        json=stream(
            "media.activity",
            "acme",
            at("2026-03-10T09:00:00Z"),
            at("2026-03-10T09:20:00Z"),
            user="u3",
            stream="u3/mic",
            kind="mic",
        ),
    )
    assert r.json()["rejected"] == []
    html = page_of(browser, make_key(demo, "customer", "acme")[1], "/console/customers/acme")
    words = text_of(section(html, "feature-media"))
    assert "510 of 500 minutes" in words and "Remaining 0 minutes" in words
    assert "State Blocked since 10 Mar 2026, 12:00 UTC" in words
    assert "Forecast already used up" in words
    history = text_of(section(html, "history"))
    assert "media: blocked at the limit of 500 minutes" in history
    assert "media: the allowance is used up (510 of 500 minutes)" in history


def test_studios_managed_volume_in_overage_this_period(demo: Any, browser: Any) -> None:
    html = page_of(browser, make_key(demo, "customer", "studio")[1], "/console/customers/studio")
    card = section(html, "feature-managed_media")
    words = text_of(card)
    assert "30 of 25 h" in words  # the period's highest level, against what is included
    assert "Level now 20 h" in words
    assert "State In overage this period" in words
    assert "Period 15 Feb 2026 – 14 Mar 2026" in words
    # included in green, used in blue, up to the maximum (40 h) in grey
    for kind in ("included", "used", "maximum", "overage"):
        assert f'class="seg-{kind}"' in card
    assert "Members" not in words  # a gauge is one level for the whole organization
    invoices = text_of(section(html, "invoices"))
    assert "Total so far $399.00" in invoices  # 299 flat + 5 h × $20 overage


def test_a_top_up_shows_in_the_bar_the_history_and_the_forecast(demo: Any, browser: Any) -> None:
    r = demo.post("/v1/customers/acme/topups", json={"feature": "media", "blocks": 1, "id": "t-1"})
    assert r.status_code == 201, r.text
    html = page_of(browser, make_key(demo, "customer", "acme")[1], "/console/customers/acme")
    card = section(html, "feature-media")
    words = text_of(card)
    assert "490 of 1,500 minutes" in words and 'class="seg-granted"' in card
    assert "top-ups and credits 1,000 minutes" in words
    assert "State Comfortably under the limit" in words
    # 1,010 more at 490 per 228 hours: 469.96 hours on, early on the 30th
    assert "Forecast runs out around 30 Mar 2026" in words
    history = text_of(section(html, "history"))
    assert "media: 1 top-up block bought, 1,000 more, for $5.00" in history


def test_notices_in_words() -> None:
    from quotameter.console.organization import describe

    def notice(kind: str, **details: Any) -> dict[str, Any]:
        return {"type": kind, "feature": "sessions", "percent": None, "details": details}

    upgrading = notice("plan.upgrading", from_plan="sessions_100k", to_plan="sessions_200k")
    assert describe(upgrading) == "sessions used up: upgrading from sessions_100k to sessions_200k"
    upgraded = notice("plan.upgraded", from_plan="sessions_100k", to_plan="sessions_200k")
    assert describe(upgraded) == "upgraded to sessions_200k (was sessions_100k)"
    assert describe(notice("access.restored")) == "sessions: available again"
    threshold = {
        **notice("usage.threshold", usage="90000", limit="100000", unit="session"),
        "percent": Decimal(90),
    }
    assert describe(threshold) == (
        "sessions: 90 % of the allowance used (90,000 of 100,000 sessions)"
    )


def test_another_organizations_page_and_invoices_are_not_found_for_a_customer_key(
    demo: Any, browser: Any
) -> None:
    _, key = make_key(demo, "customer", "acme")
    sign_in(browser, key)
    assert browser.get("/console/customers/studio").status_code == 404
    assert browser.get("/console/customers/studio/invoices/studio-20260215").status_code == 404


def test_a_finalized_invoice_prints_from_the_console_as_the_api_answers_it(
    demo: Any, browser: Any, clock: Any
) -> None:
    from quotameter.invoices.service import finalize_due

    clock.now = at("2026-03-17T00:00:00Z")  # studio's cycle of 15 Feb ended, with its grace
    svc = demo.app.state.services
    assert finalize_due(svc.engine, svc.catalogs, clock()) >= 1
    _, key = make_key(demo, "customer", "studio")
    html = page_of(browser, key, "/console/customers/studio")
    invoices = section(html, "invoices")
    link = '<a href="/console/customers/studio/invoices/studio-20260215">studio-20260215</a>'
    assert link in invoices
    assert "15 Feb 2026 – 14 Mar 2026 · $399.00" in text_of(invoices)
    printable = browser.get("/console/customers/studio/invoices/studio-20260215")
    api = demo.get("/v1/customers/studio/invoices/studio-20260215.html")
    assert printable.status_code == 200 and api.status_code == 200
    assert printable.text == api.text and "studio-20260215" in printable.text
    assert printable.headers["cache-control"] == "no-store"
    assert browser.get("/console/customers/studio/invoices/studio-20990101").status_code == 404


# --- the charts' geometry (pure) ---------------------------------------------------------------


def test_the_bar_of_an_allowance_with_top_ups_an_overage_zone_and_marks() -> None:
    D = Decimal
    bar = charts.bar(
        usage=D(30),
        included=D(25),
        granted=D(0),
        limit=D(25),
        hard_limit=D(40),
        level=D(20),
        thresholds=[D(90)],
    )
    assert bar.top == 40
    assert [(s.kind, s.start, s.end) for s in bar.segments] == [
        ("included", 0, 25),
        ("maximum", 25, 40),
        ("overage", 25, 40),
        ("used", 0, 30),
    ]
    assert [(m.kind, m.at) for m in bar.marks] == [
        ("threshold", D("22.5")),
        ("hard-limit", 40),
        ("level", 20),
    ]
    assert bar.x(D(30)) == 750 and bar.x(D(50)) == 1000
    topped = charts.bar(
        usage=D(4526), included=D(5000), granted=D(1000), limit=D(6000), hard_limit=D(6000)
    )
    assert [(s.kind, s.start, s.end) for s in topped.segments] == [
        ("included", 0, 5000),
        ("granted", 5000, 6000),
        ("used", 0, 4526),
    ]
    svg = charts.bar_svg(topped, "4,526 of 6,000 minutes")
    assert svg.startswith('<svg class="meter-bar" role="img" aria-label="4,526 of 6,000 minutes"')
    assert '<rect class="seg-granted" x="833.3" y="0" width="166.7"' in svg
    unlimited = charts.bar(usage=D(12), included=None, granted=D(0), limit=None, hard_limit=None)
    assert [(s.kind, s.end) for s in unlimited.segments] == [("used", 12)] and unlimited.top == 12


def test_day_columns_scale_to_the_highest_day_and_carry_their_titles() -> None:
    D = Decimal
    cols = charts.columns([D(120), D(0), D(60), D(240)], ["a", "b", "c", "d"])
    assert [(c.x, c.width, c.height) for c in cols] == [
        (D("18.8"), D("212.5"), 60),
        (D("268.8"), D("212.5"), 0),
        (D("518.8"), D("212.5"), 30),
        (D("768.8"), D("212.5"), 120),
    ]
    svg = charts.columns_svg(cols, "media <by day>")
    assert svg.count("<rect") == 4 and "<title>d</title>" in svg
    assert 'aria-label="media &lt;by day&gt;"' in svg
    assert charts.columns([], []) == []
    with pytest.raises(ValueError):
        charts.columns([D(1)], [])
