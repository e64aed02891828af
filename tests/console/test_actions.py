"""The organization page's admin actions (top-up, plan, seats, credit: each reviewed, then
confirmed) and its live banner, through the console's forms (both databases)."""

from __future__ import annotations

import re
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from quotameter.console.formatting import money
from support import ADMIN_KEY, demo_catalog, stream

PAGE = "/console/customers/acme"

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def catalog(client: Any) -> None:
    doc = demo_catalog(tiny={"plan": "basic", "seats": 1, "timezone": "UTC"})
    doc["plans"]["basic"]["prices"] = [{"type": "per_seat", "amount": "8.00"}]
    assert client.put("/v1/catalog", json=doc).status_code == 200


@pytest.fixture
def browser(app: Any) -> Any:
    with TestClient(app, follow_redirects=False) as c:  # no key header: a browser
        yield c


@pytest.fixture
def admin(browser: Any) -> Any:
    assert sign_in(browser, ADMIN_KEY).status_code == 303
    return browser


def sign_in(browser: Any, key: str) -> Any:
    form = browser.get("/")
    return browser.post("/", data={"csrf": csrf_of(form.text), "key": key})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def text_of(page: str) -> str:
    """The page's words, without tags, as a person reads them."""
    inline = re.sub(r"</?(strong|em|span|a)\b[^>]*>", "", page)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def form_of(page: str, kind: str, path: str = PAGE) -> dict[str, str]:
    """The hidden fields (csrf, a fresh id) of one action's form on the organization page."""
    found = re.search(
        rf'<form class="action" method="post" action="{path}/actions/{kind}".*?</form>',
        page,
        re.S,
    )
    assert found, page
    hidden = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', found.group(0)))
    assert set(hidden) == {"csrf", "id"} and len(hidden["id"]) == 36
    return hidden


def review_of(admin: Any, kind: str, **fields: str) -> str:
    """The review page of an action, from its form on the organization page."""
    hidden = form_of(admin.get(PAGE).text, kind)
    review = admin.post(f"{PAGE}/actions/{kind}", data={**hidden, **fields})
    assert review.status_code == 200, review.text
    assert confirm_fields(review.text)["id"] == hidden["id"]
    return str(review.text)


def confirm(admin: Any, kind: str, review: str) -> Any:
    """The review page's "Confirm": the same fields, with confirm=1."""
    fields = confirm_fields(review)
    assert fields["confirm"] == "1"
    return admin.post(f"{PAGE}/actions/{kind}", data=fields)


def review_then_confirm(admin: Any, kind: str, **fields: str) -> tuple[str, Any]:
    review = review_of(admin, kind, **fields)
    return review, confirm(admin, kind, review)


def confirm_fields(review: str) -> dict[str, str]:
    found = re.search(
        r'<form method="post" action="[^"]+" class="choices">.*?</form>', review, re.S
    )
    assert found, review
    return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', found.group(0)))


def upcoming_total(client: Any, customer: str = "acme") -> Decimal:
    got = client.get(f"/v1/customers/{customer}/invoices/upcoming")
    assert got.status_code == 200, got.text
    return Decimal(got.json()["total"])


def grants(client: Any, customer: str = "acme") -> list[dict[str, Any]]:
    return list(client.get(f"/v1/customers/{customer}/grants").json()["grants"])


def test_a_top_up_is_reviewed_with_its_price_bought_once_and_a_replay_buys_nothing(
    client: Any, admin: Any
) -> None:
    page = admin.get(PAGE).text
    assert "blocks of 1,000 minutes at $5.00" in text_of(page)
    review = review_of(admin, "topup", feature="media", blocks="1")
    assert "Buy media: 1 block of 1,000 minutes for $5.00" in text_of(review)
    assert ">Confirm<" in review and f'href="{PAGE}">Cancel' in review
    assert grants(client) == []  # the review did nothing
    done = confirm(admin, "topup", review)
    assert done.status_code == 303
    assert done.headers["location"] == f"{PAGE}?done=topup&feature=media"
    back = admin.get(done.headers["location"]).text
    assert re.search(r'role="status"><p>Top-up of media bought', back)
    bought = grants(client)
    assert [(g["kind"], g["blocks"], g["price"]) for g in bought] == [("topup", 1, "5.00")]
    # The same confirmation again (a double click, a reload): the same id, nothing bought.
    again = confirm(admin, "topup", review)
    assert again.headers["location"] == f"{PAGE}?done=topup-again&feature=media"
    assert "was not bought again" in admin.get(again.headers["location"]).text
    assert len(grants(client)) == 1
    # Three blocks: the price is blocks × the block price.
    review, _ = review_then_confirm(admin, "topup", feature="media", blocks="3")
    assert "Buy media: 3 blocks of 1,000 minutes for $15.00 (3,000 minutes in all" in text_of(
        review
    )
    assert sorted(g["blocks"] for g in grants(client)) == [1, 3]


def test_a_plan_change_is_reviewed_with_its_proration_and_made_once(
    client: Any, admin: Any
) -> None:
    before = upcoming_total(client)
    review = review_of(admin, "plan", plan="pro")
    words = text_of(review)
    assert "Move acme from plan basic to plan pro, from now" in words
    assert "Goes on" in words  # the proration line
    assert "media: 5,000 minutes included now, not on the new plan: members lose it" in words
    assert "managed_media: not on the plan now, 25 h with the change" in words
    assert client.get("/v1/customers/acme").json()["plan"] == "basic"  # the review kept nothing
    assert upcoming_total(client) == before
    assert client.get("/v1/customers/acme/notifications").json()["notifications"] == []
    done = confirm(admin, "plan", review)
    assert done.headers["location"] == f"{PAGE}?done=plan"
    after = upcoming_total(client)
    assert after > before
    # What the review said this period would cost more is what the invoice now says.
    assert f"+{money(after - before)} more" in words
    assert f"{money(before)} now, {money(after)} with the change" in words
    shown = client.get("/v1/customers/acme").json()
    assert shown["plan"] == "pro" and len(shown["plan_changes"]) == 1
    assert "on plan pro from now" in admin.get(done.headers["location"]).text
    # Confirmed again: acme is on pro already, so nothing changes, and the page says so.
    again = confirm(admin, "plan", review)
    assert again.headers["location"] == f"{PAGE}?done=plan-same"
    assert "acme is on plan pro already: nothing changed." in text_of(
        admin.get(again.headers["location"]).text
    )
    assert len(client.get("/v1/customers/acme").json()["plan_changes"]) == 1
    # Reviewing the plan it is on says that confirming would change nothing.
    same = admin.post(
        f"{PAGE}/actions/plan", data={**form_of(admin.get(PAGE).text, "plan"), "plan": "pro"}
    )
    assert "is on plan pro already: confirming changes nothing" in text_of(same.text)
    assert ">Confirm<" not in same.text


def test_a_seat_change_is_reviewed_with_its_per_seat_fee_and_allowance(
    client: Any, admin: Any
) -> None:
    before = upcoming_total(client)
    review, done = review_then_confirm(admin, "seats", seats="12")
    words = text_of(review)
    assert "Pay for 12 seats instead of 10, from now" in words
    # 10 seats at $8.00, then 12: the per-seat line comes off and goes on again, $16 more.
    assert "+$16.00 more" in words
    assert "media: 5,000 minutes included now, 6,000 minutes with the change" in words
    assert done.headers["location"] == f"{PAGE}?done=seats"
    assert upcoming_total(client) == before + Decimal("16.00")
    assert client.get("/v1/customers/acme").json()["seats"] == 12
    again = confirm(admin, "seats", review)
    assert again.headers["location"] == f"{PAGE}?done=seats-same"
    assert "acme pays for 12 seats already: nothing changed." in text_of(
        admin.get(again.headers["location"]).text
    )
    assert upcoming_total(client) == before + Decimal("16.00")


def test_a_credit_is_reviewed_in_the_features_unit_and_granted_once(
    client: Any, admin: Any
) -> None:
    review, done = review_then_confirm(admin, "credit", feature="media", amount="250")
    assert "Grant 250 minutes of media, free of charge" in text_of(review)
    assert done.headers["location"] == f"{PAGE}?done=credit&feature=media"
    media = client.get("/v1/customers/acme/entitlements/media").json()
    assert Decimal(str(media["granted"])) == 250
    again = confirm(admin, "credit", review)
    assert again.headers["location"] == f"{PAGE}?done=credit-again&feature=media"
    assert [(g["kind"], Decimal(str(g["amount"]))) for g in grants(client)] == [("credit", 250)]


@pytest.mark.parametrize(
    ("kind", "fields", "named"),
    [
        ("topup", {"feature": "media", "blocks": "0"}, "Blocks: must be a whole number"),
        ("topup", {"feature": "media", "blocks": "two"}, "Blocks: must be a whole number"),
        ("topup", {"feature": "sessions", "blocks": "1"}, "Feature: plan basic sells no top-ups"),
        ("plan", {"plan": "gold"}, "Plan: unknown plan gold (known: basic, connector"),
        ("seats", {"seats": "-1"}, "Seats: must be a whole number from 0"),
        ("credit", {"feature": "media", "amount": "abc"}, "Amount: must be a number greater"),
        ("credit", {"feature": "media", "amount": "-5"}, "Amount: must be a number greater"),
    ],
)
def test_bad_input_comes_back_on_the_review_page_naming_the_field(
    client: Any, admin: Any, kind: str, fields: dict[str, str], named: str
) -> None:
    hidden = form_of(admin.get(PAGE).text, kind)
    for confirm in ({}, {"confirm": "1"}):
        answer = admin.post(f"{PAGE}/actions/{kind}", data={**hidden, **fields, **confirm})
        assert answer.status_code == 422, answer.text
        assert named in text_of(answer.text)
        assert 'aria-invalid="true"' in answer.text  # the field itself is marked
        assert ">Confirm<" not in answer.text
    assert grants(client) == []
    shown = client.get("/v1/customers/acme").json()
    assert (shown["plan"], shown["seats"], shown["plan_changes"]) == ("basic", 10, [])


def test_a_customer_key_cannot_act_and_a_post_without_the_token_is_refused(
    client: Any, browser: Any
) -> None:
    made = client.post("/v1/keys", json={"role": "customer", "customer": "acme"}).json()
    assert sign_in(browser, made["key"]).status_code == 303
    own = browser.get(PAGE)
    assert own.status_code == 200 and "/actions/" not in own.text  # no forms to see
    fields = {"csrf": csrf_of(own.text), "id": "x-1", "feature": "media", "blocks": "1"}
    refused = browser.post(f"{PAGE}/actions/topup", data={**fields, "confirm": "1"})
    assert refused.status_code == 403 and "admin key" in refused.text
    browser.cookies.clear()
    assert sign_in(browser, ADMIN_KEY).status_code == 303
    hidden = form_of(browser.get(PAGE).text, "topup")
    data = {"id": hidden["id"], "feature": "media", "blocks": "1", "confirm": "1"}
    assert browser.post(f"{PAGE}/actions/topup", data=data).status_code == 403
    forged = browser.post(f"{PAGE}/actions/topup", data={**data, "csrf": "made-up"})
    assert forged.status_code == 403
    assert grants(client) == []
    assert browser.post(f"{PAGE}/actions/refund", data=hidden).status_code == 404
    opened = browser.get(f"{PAGE}/actions/topup")  # a review's address, opened as a page
    assert opened.status_code == 303 and opened.headers["location"] == PAGE
    unknown = browser.post("/console/customers/nobody/actions/topup", data={**hidden, **data})
    assert unknown.status_code == 404


def test_the_banner_names_a_blocked_feature_and_the_live_stream_relays_its_state(
    client: Any, admin: Any, clock: Any
) -> None:
    media = stream(
        "media.activity",
        "tiny",
        clock.now.replace(hour=1),
        clock.now.replace(hour=9, minute=20),  # 500 minutes: all of tiny's one seat
        user="u1",
        stream="u1/mic",
        kind="mic",
    )
    assert client.post("/v1/events", json=media).json()["rejected"] == []
    tiny = "/console/customers/tiny"
    page = admin.get(tiny).text
    banner = re.search(r'<div class="banner" id="live-banner"[^>]*>', page)
    assert banner and " hidden" not in banner.group(0)
    assert f'data-live="{tiny}/live"' in banner.group(0) and 'role="alert"' in banner.group(0)
    assert "media is blocked: 500 of 500 minutes used. Members cannot use it until a top-up" in (
        text_of(page)
    )
    live = admin.get(f"{tiny}/live", params={"max_seconds": 0})
    assert live.status_code == 200 and live.headers["content-type"].startswith("text/event-stream")
    assert "event: state" in live.text and '"media":{"has_access":false}' in live.text
    # Buying a block from the page restores access: the banner is gone from the page.
    hidden = form_of(page, "topup", tiny)
    confirm = {**hidden, "feature": "media", "blocks": "1", "confirm": "1"}
    assert admin.post(f"{tiny}/actions/topup", data=confirm).status_code == 303
    page = admin.get(tiny).text
    assert "is blocked" not in page
    assert re.search(r'<div class="banner" id="live-banner"[^>]* hidden>', page)
    # The restore notice is what a live page, resuming after the block, hears next.
    notices = client.get("/v1/customers/tiny/notifications").json()["notifications"]
    blocked = next(n for n in notices if n["type"] == "access.blocked")
    resumed = admin.get(
        f"{tiny}/live", params={"max_seconds": 0}, headers={"Last-Event-ID": str(blocked["id"])}
    )
    assert "event: access.restored" in resumed.text


def test_the_live_stream_is_for_a_session_that_sees_the_customer(client: Any, browser: Any) -> None:
    assert browser.get(f"{PAGE}/live").status_code == 303  # no session: to sign in
    made = client.post("/v1/keys", json={"role": "customer", "customer": "tiny"}).json()
    assert sign_in(browser, made["key"]).status_code == 303
    assert browser.get(f"{PAGE}/live").status_code == 404
    own = browser.get("/console/customers/tiny/live", params={"max_seconds": 0})
    assert own.status_code == 200 and "event: state" in own.text
