"""What a person sees: the printable invoice, and a product page whose microphone button
stops responding the moment media is blocked — both in a real headless Chromium against a
real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quotameter.invoices.service import finalize_due
from quotameter.notifications.scheduler import tick
from support import ADMIN, MIC_ON, at, buy_media_block, event, mic_left_on, minutes, running

A4_WIDTH_PX = 794  # 210 mm at 96 px per inch
TEAM = {  # a plan with every kind of fee: flat, per seat, graduated usage
    "meters": {
        "sessions": {"event_type": "session.created", "aggregation": "count", "unit": "session"}
    },
    "plans": {
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
        }
    },
    "customers": {"crew": {"plan": "team", "seats": 4}},
}


@pytest.fixture
def served(tmp_path: Path, clock: Any) -> Iterator[tuple[Any, str]]:
    with running(f"sqlite:///{tmp_path / 'browser.sqlite3'}", clock) as (app, _server, url):
        yield app, url


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_printable_invoice_shows_the_lines_and_prints_on_one_a4_page(served, page) -> None:  # type: ignore[no-untyped-def]
    app, url = served
    with httpx.Client(base_url=url, headers=ADMIN) as admin:
        assert admin.put("/v1/catalog", json=TEAM).status_code == 200
        sessions = [event("session.created", "crew", at("2026-03-05T10:00:00Z")) for _ in range(7)]
        assert admin.post("/v1/events", json=sessions).json()["accepted"] == 7
        svc = app.state.services
        assert finalize_due(svc.engine, svc.catalogs, at("2026-04-02T00:00:00Z")) == 1
        [invoice] = admin.get("/v1/customers/crew/invoices").json()["invoices"]
    assert [line["kind"] for line in invoice["lines"]][:2] == ["flat", "per_seat"] and len(
        invoice["lines"]
    ) >= 3

    page.set_extra_http_headers(ADMIN)
    response = page.goto(f"{url}/v1/customers/crew/invoices/{invoice['id']}.html")
    assert response is not None and response.status == 200
    assert page.title() == f"Invoice {invoice['number']}"
    rows = page.locator("tbody tr")
    assert rows.count() == len(invoice["lines"])
    for k, line in enumerate(invoice["lines"]):
        cells = rows.nth(k).locator("td").all_inner_texts()
        assert (cells[0], cells[1], cells[4]) == (line["description"], line["kind"], line["amount"])
    assert page.locator("tfoot td.num").inner_text() == f"{invoice['total']} {invoice['currency']}"
    assert "FINALIZED" in page.locator("h1").inner_text()  # the status badge is upper-cased by CSS

    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_WIDTH_PX, "height": 1123})
    assert (
        page.evaluate("document.documentElement.scrollWidth") <= A4_WIDTH_PX
    )  # nothing cut off at the side
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1


# A product page of the kind quotameter's users build: the microphone button follows the
# customer's in-app stream. EventSource cannot send a key, so it reads the stream with fetch.
PRODUCT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>call</title></head>
<body>
<button id="mic" disabled>Microphone</button> <span id="last">connecting</span>
<script>
const key = new URLSearchParams(location.hash.slice(1)).get("key");
const mic = document.getElementById("mic"), last = document.getElementById("last");
function handle(type, notice) {
  if (type === "state") mic.disabled = !notice.features.media.has_access;
  else if (notice.feature === "media" && type === "access.blocked") mic.disabled = true;
  else if (notice.feature === "media" && type === "access.restored") mic.disabled = false;
  last.textContent = type;
}
(async () => {
  const r = await fetch("/v1/customers/acme/notifications/stream", {
    headers: {Authorization: "Bearer " + key},
  });
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) { last.textContent = "ended"; return; }
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      let type = "message", data = "";
      for (const line of block.split("\\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) handle(type, JSON.parse(data));
    }
  }
})();
</script>
</body></html>"""


def test_the_microphone_button_stops_responding_when_media_is_blocked_and_returns_after_a_top_up(
    served, page, clock
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    app, url = served
    clock.now = MIC_ON
    key = mic_left_on(url)
    # The page is served from the API's own origin (intercepted by the browser), as a
    # product's backend would serve it next to a proxied stream.
    page.route(
        f"{url}/call", lambda route: route.fulfill(body=PRODUCT_PAGE, content_type="text/html")
    )
    page.goto(f"{url}/call#key={key}")
    mic, last = page.locator("#mic"), page.locator("#last")
    expect(last).to_have_text("state")
    expect(mic).to_be_enabled()

    clock.now = MIC_ON + minutes(600)  # time alone crosses the 500-minute limit (at 17:19)
    svc = app.state.services
    assert tick(svc.engine, svc.catalogs, clock) >= 1
    expect(mic).to_be_disabled()
    expect(last).to_have_text("access.blocked")

    buy_media_block(url)
    expect(mic).to_be_enabled()
    expect(last).to_have_text("access.restored")
