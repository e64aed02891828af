"""The operators' customers page (`/console/customers`): the table, the state filters, the
search, the sort, paging links that keep them, and one overview per page (both databases)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.test_customers_list import (
    CATALOG,
    HOUR,
    T0,
    many,
    settle,
    stand_every_customer,
)
from console.test_signin import make_key, sign_in
from support import ADMIN_KEY, event, statements


@pytest.fixture
def api(client: Any, clock: Any) -> Any:
    clock.now = T0
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    earlier = T0 - HOUR
    events = [
        event("upload", "blocked-co", earlier, mb=100),
        event("upload", "over-co", earlier, mb=120),
        event("upload", "near-co", earlier, mb=85),
        event("upload", "ok-co", earlier, mb=10),
    ]
    assert client.post("/v1/events", json=events).json()["accepted"] == len(events)
    settle(client, clock)
    return client


@pytest.fixture
def browser(app: Any, api: Any) -> Any:
    with TestClient(app, follow_redirects=False) as c:
        assert sign_in(c, ADMIN_KEY).status_code == 303
        yield c


def page(browser: Any, url: str = "/console/customers") -> str:
    r = browser.get(url)
    assert r.status_code == 200, r.text
    text: str = r.text
    return text


def listed(text: str) -> list[str]:
    """The customers of the table, in order."""
    return re.findall(r'<th scope="row"><a href="/console/customers/[^"]+">([^<]+)</a>', text)


def states(text: str) -> dict[str, str]:
    rows = re.findall(
        r'<th scope="row"><a [^>]+>([^<]+)</a></th>\s*<td>[^<]*</td>\s*'
        r'<td><span class="state [a-z]+">([^<]+)</span>',
        text,
    )
    return dict(rows)


def links(text: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', text)
    return html.unescape(found.group(1)) if found else None


def test_the_table_shows_each_customer_with_its_state_in_words(browser: Any) -> None:
    text = page(browser)
    assert listed(text) == ["blocked-co", "free-co", "near-co", "ok-co", "OK-Two", "over-co"]
    assert states(text) == {
        "blocked-co": "Blocked",
        "free-co": "Unlimited",
        "near-co": "Near\u00a0limit",
        "ok-co": "OK",
        "OK-Two": "OK",
        "over-co": "Overage",
    }
    assert '<a href="/console/customers/blocked-co">blocked-co</a>' in text
    # The most used, in words.
    assert "100\u00a0%" in text and "100 megabytes of 100 megabytes" in text
    assert '<div class="scroll">' in text  # a phone scrolls the table, not the page
    assert 'style="' not in text  # the CSP allows no style attribute


def test_state_filters_search_and_sort(browser: Any) -> None:
    text = page(browser)
    filters = dict(
        (label, html.unescape(url))
        for url, label in re.findall(
            r'<a href="([^"]+)"(?: aria-current="page")?>'
            r"(?:<strong>)?([A-Z][a-z ]+)(?:</strong>)?</a>",
            text,
        )
    )
    assert filters["Blocked"] == "/console/customers?state=blocked"
    assert listed(page(browser, filters["Blocked"])) == ["blocked-co"]
    near = page(browser, filters["Near the limit"])
    assert listed(near) == ["blocked-co", "near-co", "over-co"]
    assert 'aria-current="page"><strong>Near the limit</strong>' in near
    assert listed(page(browser, filters["In overage"])) == ["over-co"]
    assert listed(page(browser, filters["Unlimited"])) == ["free-co"]

    # The search form is labelled and keeps the filter; sorting keeps both.
    assert '<label for="customer-search">' in near and 'id="customer-search"' in near
    assert '<input type="hidden" name="state" value="near_limit">' in near
    searched = page(browser, "/console/customers?state=near_limit&q=NEAR")
    assert listed(searched) == ["near-co"] and 'value="NEAR"' in searched
    by_percent = re.search(r'<a href="([^"]+)">Percentage used</a>', searched)
    assert by_percent and html.unescape(by_percent.group(1)) == (
        "/console/customers?state=near_limit&q=NEAR&sort=percent"
    )
    ranked = page(browser, "/console/customers?sort=percent")
    assert listed(ranked) == ["over-co", "blocked-co", "near-co", "ok-co", "OK-Two", "free-co"]


def test_paging_links_keep_the_filters(browser: Any, api: Any) -> None:
    assert api.put("/v1/catalog?prune=true", json=many(130)).status_code == 200
    stand_every_customer(api, 130)
    first = page(browser, "/console/customers?sort=percent&q=c0")
    assert links(first, "prev") is None
    seen = listed(first)
    assert len(seen) == 50
    second_url = links(first, "next")
    assert second_url is not None and "sort=percent" in second_url and "q=c0" in second_url
    second = page(browser, second_url)
    third_url = links(second, "next")
    assert third_url is not None
    third = page(browser, third_url)
    assert links(third, "next") is None
    seen += listed(second) + listed(third)
    assert len(seen) == len(set(seen)) == 130
    # Back: the previous page of the third is the second, of the second the first.
    back = links(third, "prev")
    assert back is not None and listed(page(browser, back)) == listed(second)
    back = links(second, "prev")
    assert back == "/console/customers?q=c0&sort=percent"
    assert listed(page(browser, back)) == listed(first)


def test_a_bad_filter_is_an_error_page_naming_it(browser: Any) -> None:
    r = browser.get("/console/customers?state=asleep")
    assert r.status_code == 422 and "state: must be one of" in html.unescape(r.text)
    r = browser.get("/console/customers?cursor=nonsense")
    assert r.status_code == 422 and "cursor:" in r.text


def test_a_customer_key_may_not_see_the_list(app: Any, api: Any) -> None:
    _, key = make_key(api, "customer", "ok-co")
    with TestClient(app, follow_redirects=False) as c:
        sign_in(c, key)
        assert c.get("/console/customers").status_code == 403


def test_a_page_costs_the_same_statements_at_10_and_300_customers(browser: Any, api: Any) -> None:
    engine = api.app.state.services.engine
    counts = []
    for n in (10, 300):
        assert api.put("/v1/catalog?prune=true", json=many(n)).status_code == 200
        stand_every_customer(api, n)
        page(browser, "/console/customers?sort=percent")  # warm
        with statements(engine) as seen:
            text = page(browser, "/console/customers?sort=percent&state=near_limit")
        assert listed(text)
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 4, counts
