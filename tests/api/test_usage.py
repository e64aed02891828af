"""Usage broken down per group and window: who used how much, and when, with the balance's
arithmetic (merged spans, rounding per piece, carried gauge levels)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotameter.catalog.model import MeterSpec
from quotameter.meters.model import Simple, aggregate_simple, to_unit
from quotameter.meters.spans import Span, usage_us
from quotameter.timeutil import from_us, to_us
from quotameter.usage.model import (
    Tally,
    TooMany,
    duration_breakdown,
    gauge_windows,
    simple_breakdown,
    window_edges,
)
from support import ADMIN, at, demo_catalog, event, iso, minutes, stream

PATH = "/v1/customers/{customer}/usage"
D2, D3 = at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z")


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """The admin client, with the usage router included unless `server.py` already has it."""
    from fastapi.testclient import TestClient

    from quotameter.api.usage import router
    from quotameter.api.web import error_responses

    if not any(getattr(route, "path", None) == PATH for route in app.routes):
        app.include_router(router, responses=error_responses(401, 403))
    with TestClient(app, headers=ADMIN) as c:
        yield c


@pytest.fixture
def api(client):  # type: ignore[no-untyped-def]
    extra = {"berlin": {"plan": "basic", "seats": 1, "timezone": "Europe/Berlin"}}
    r = client.put("/v1/catalog", json=demo_catalog(**extra))
    assert r.status_code == 200, r.text
    return client


def post(client, events: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text


def media(
    user: str, kind: str, start: datetime, end: datetime | None, customer: str = "acme"
) -> list[dict[str, Any]]:
    return stream(
        "media.activity", customer, start, end, user=user, stream=f"{user}/{kind}", kind=kind
    )


def get_usage(client, customer: str = "acme", **params: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.get(PATH.format(customer=customer), params=params)
    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)  # type: ignore[no-any-return]


def table(body: dict[str, Any]) -> list[tuple[Any, str, Decimal]]:
    return [(r["group"], r["window_start"], Decimal(str(r["usage"]))) for r in body["rows"]]


def balance_usage(client, customer: str, feature: str, when: datetime | None = None) -> Decimal:  # type: ignore[no-untyped-def]
    r = client.get(
        f"/v1/customers/{customer}/entitlements/{feature}", params={"at": iso(when)} if when else {}
    )
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


def two_users_two_days(client) -> None:  # type: ignore[no-untyped-def]
    post(
        client,
        [
            # 2 March: ana's mic and camera overlap: 09:00:00–09:20:10 merged = 21
            # minutes; a 20 s screen share = 1.
            *media(
                "ana@acme.example",
                "mic",
                D2 + timedelta(hours=9),
                D2 + timedelta(hours=9, minutes=10, seconds=30),
            ),
            *media(
                "ana@acme.example",
                "camera",
                D2 + timedelta(hours=9, minutes=5),
                D2 + timedelta(hours=9, minutes=20, seconds=10),
            ),
            *media(
                "ana@acme.example",
                "screen",
                D2 + timedelta(hours=14),
                D2 + timedelta(hours=14, seconds=20),
            ),
            # bob: 4 min 59 s = 5; listening does not count.
            *media(
                "bob@acme.example",
                "mic",
                D2 + timedelta(hours=10),
                D2 + timedelta(hours=10, minutes=4, seconds=59),
            ),
            *media(
                "bob@acme.example", "speaker", D2 + timedelta(hours=10), D2 + timedelta(hours=12)
            ),
            # 3 March: ana 30 minutes; bob's mic hands over to his camera without a
            # gap: one 3-minute span.
            *media(
                "ana@acme.example",
                "camera",
                D3 + timedelta(hours=8),
                D3 + timedelta(hours=8, minutes=30),
            ),
            *media(
                "bob@acme.example",
                "mic",
                D3 + timedelta(hours=8),
                D3 + timedelta(hours=8, minutes=2, seconds=1),
            ),
            *media(
                "bob@acme.example",
                "camera",
                D3 + timedelta(hours=8, minutes=2, seconds=1),
                D3 + timedelta(hours=8, minutes=3),
            ),
        ],
    )


# --- duration: media minutes -------------------------------------------------------------------


def test_minutes_per_user_per_day_are_merged_and_rounded_like_the_balance(api) -> None:  # type: ignore[no-untyped-def]
    two_users_two_days(api)
    body = get_usage(api, feature="media", group_by="user", window="day")
    assert {
        k: body[k]
        for k in ("customer", "feature", "meter", "unit", "from", "to", "group_by", "window")
    } == {
        "customer": "acme",
        "feature": "media",
        "meter": "media_minutes",
        "unit": "minute",
        "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-10T12:00:00Z",
        "group_by": "user",
        "window": "day",
    }
    assert table(body) == [
        ("ana@acme.example", "2026-03-02T00:00:00Z", 22),
        ("ana@acme.example", "2026-03-03T00:00:00Z", 30),
        ("bob@acme.example", "2026-03-02T00:00:00Z", 5),
        ("bob@acme.example", "2026-03-03T00:00:00Z", 3),
    ]
    assert body["rows"][0]["window_end"] == "2026-03-03T00:00:00Z"
    assert Decimal(body["total"]) == 60 == balance_usage(api, "acme", "media")


def test_group_by_without_window_gives_one_row_per_user_adding_up_to_the_total(api) -> None:  # type: ignore[no-untyped-def]
    two_users_two_days(api)
    body = get_usage(api, feature="media", group_by="user")
    assert table(body) == [
        ("ana@acme.example", "2026-03-01T00:00:00Z", 52),
        ("bob@acme.example", "2026-03-01T00:00:00Z", 8),
    ]
    assert body["window"] is None and body["rows"][0]["window_end"] == "2026-03-10T12:00:00Z"
    assert Decimal(body["total"]) == 60
    whole = get_usage(api, feature="media")  # no group, no window: one row, the balance's number
    assert table(whole) == [(None, "2026-03-01T00:00:00Z", 60)]


def test_without_group_every_day_has_a_row(api) -> None:  # type: ignore[no-untyped-def]
    two_users_two_days(api)
    body = get_usage(
        api,
        feature="media",
        window="day",
        **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-05T00:00:00Z"},
    )
    assert table(body) == [
        (None, "2026-03-01T00:00:00Z", 0),
        (None, "2026-03-02T00:00:00Z", 27),
        (None, "2026-03-03T00:00:00Z", 33),
        (None, "2026-03-04T00:00:00Z", 0),
    ]


def test_a_stream_across_local_midnight_is_split_and_each_day_rounded(api) -> None:  # type: ignore[no-untyped-def]
    # Berlin is UTC+1 in early March: 22:59:30Z–23:00:30Z is 23:59:30–00:00:30 local.
    post(
        api,
        media(
            "eve@berlin.example",
            "mic",
            at("2026-03-04T22:59:30Z"),
            at("2026-03-04T23:00:30Z"),
            "berlin",
        ),
    )
    days = get_usage(api, "berlin", feature="media", group_by="user", window="day")
    assert days["from"] == "2026-02-28T23:00:00Z"  # the calendar month in Berlin
    assert table(days) == [
        ("eve@berlin.example", "2026-03-03T23:00:00Z", 1),
        ("eve@berlin.example", "2026-03-04T23:00:00Z", 1),
    ]
    # One minute in the month (what the balance says), one minute on each of the two days.
    assert Decimal(days["total"]) == 1 == balance_usage(api, "berlin", "media")
    month = get_usage(api, "berlin", feature="media", window="month")
    assert table(month) == [(None, "2026-02-28T23:00:00Z", 1)]
    hours = get_usage(
        api,
        "berlin",
        feature="media",
        window="hour",
        **{"from": "2026-03-04T22:00:00Z", "to": "2026-03-05T00:00:00Z"},
    )
    assert table(hours) == [(None, "2026-03-04T22:00:00Z", 1), (None, "2026-03-04T23:00:00Z", 1)]


def test_days_follow_the_customers_clock_across_daylight_saving(api, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = at("2026-04-02T00:00:00Z")
    body = get_usage(
        api,
        "berlin",
        feature="media",
        window="day",
        **{"from": "2026-03-28T23:00:00Z", "to": "2026-03-30T22:00:00Z"},
    )
    # 29 March has 23 hours in Berlin (clocks go forward at 02:00 CET).
    assert [r["window_start"] for r in body["rows"]] == [
        "2026-03-28T23:00:00Z",
        "2026-03-29T22:00:00Z",
    ]


def test_one_user_can_use_2300_minutes_and_another_300_of_the_pool(api) -> None:  # type: ignore[no-untyped-def]
    # 10 seats × 500 = 5,000 pooled minutes, used unevenly.
    post(
        api,
        [
            *media("ana@acme.example", "screen", D2, D2 + minutes(2300)),
            *media(
                "bob@acme.example",
                "mic",
                D2 + timedelta(hours=9),
                D2 + timedelta(hours=9) + minutes(300),
            ),
        ],
    )
    body = get_usage(api, feature="media", group_by="user")
    assert table(body) == [
        ("ana@acme.example", "2026-03-01T00:00:00Z", 2300),
        ("bob@acme.example", "2026-03-01T00:00:00Z", 300),
    ]
    r = api.get("/v1/customers/acme/entitlements/media").json()
    assert (r["usage"], r["limit"], r["remaining"]) == (2600, 5000, 2400) and Decimal(
        body["total"]
    ) == 2600
    days = get_usage(api, feature="media", group_by="user", window="day")
    assert table(days) == [
        ("ana@acme.example", "2026-03-02T00:00:00Z", 1440),
        ("ana@acme.example", "2026-03-03T00:00:00Z", 860),
        ("bob@acme.example", "2026-03-02T00:00:00Z", 300),
    ]


def test_an_open_stream_accrues_up_to_now_and_to_is_cut_at_now(api, clock) -> None:  # type: ignore[no-untyped-def]
    post(api, media("ana@acme.example", "mic", clock.now - timedelta(minutes=90, seconds=30), None))
    body = get_usage(
        api,
        feature="media",
        group_by="user",
        window="hour",
        to="2026-03-20T00:00:00Z",
        **{"from": "2026-03-10T10:00:00Z"},
    )
    assert body["to"] == "2026-03-10T12:00:00Z"
    assert table(body) == [
        ("ana@acme.example", "2026-03-10T10:00:00Z", 31),
        ("ana@acme.example", "2026-03-10T11:00:00Z", 60),
    ]
    assert (
        Decimal(get_usage(api, feature="media")["total"])
        == 91
        == balance_usage(api, "acme", "media")
    )
    clock.advance(minutes=10)
    assert (
        Decimal(get_usage(api, feature="media")["total"])
        == 101
        == balance_usage(api, "acme", "media")
    )


def test_a_stream_begun_before_from_counts_from_from(api) -> None:  # type: ignore[no-untyped-def]
    two_users_two_days(api)
    body = get_usage(
        api,
        feature="media",
        group_by="user",
        **{"from": "2026-03-02T09:10:00Z", "to": "2026-03-02T12:00:00Z"},
    )
    # ana 09:10:00–09:20:10 = 11 minutes; bob 10:00–10:04:59 = 5.
    assert table(body) == [
        ("ana@acme.example", "2026-03-02T09:10:00Z", 11),
        ("bob@acme.example", "2026-03-02T09:10:00Z", 5),
    ]


def test_a_past_period_totals_what_its_balance_said(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [
            *media(
                "ana@acme.example", "mic", at("2026-02-10T10:00:00Z"), at("2026-02-10T10:07:01Z")
            ),
            *media(
                "ana@acme.example", "camera", at("2026-02-28T23:58:30Z"), at("2026-03-01T00:01:00Z")
            ),
        ],
    )
    feb = get_usage(
        api,
        feature="media",
        window="day",
        **{"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    )
    assert len(feb["rows"]) == 28
    assert (
        Decimal(feb["total"])
        == 8 + 2
        == balance_usage(api, "acme", "media", at("2026-02-28T23:59:59.999999Z"))
    )
    # Only `to` given: `from` is the start of the period that holds it.
    assert (
        get_usage(api, feature="media", to="2026-02-20T00:00:00Z")["from"] == "2026-02-01T00:00:00Z"
    )


def test_streaming_minutes_per_participant_stream(api) -> None:  # type: ignore[no-untyped-def]
    t0 = at("2026-03-05T09:00:00Z")
    post(
        api,
        [
            *stream(
                "connector.stream", "callco", t0, t0 + minutes(40), stream_id="p1", connection="c1"
            ),
            *stream(
                "connector.stream",
                "callco",
                t0 + minutes(10),
                t0 + minutes(30),
                stream_id="p2",
                connection="c1",
            ),
        ],
    )
    body = get_usage(api, "callco", feature="audio_connector", group_by="stream_id")
    assert table(body) == [("p1", "2026-03-01T00:00:00Z", 40), ("p2", "2026-03-01T00:00:00Z", 20)]
    assert Decimal(body["total"]) == 60 == balance_usage(api, "callco", "audio_connector")


def test_spans_sent_whole_and_late_count_where_they_lie(api, clock) -> None:  # type: ignore[no-untyped-def]
    # A span sent as one event (sent later, stamped now) counts on the day it covers, like in
    # the balance.
    post(
        api,
        [
            event(
                "media.activity",
                "acme",
                clock.now,
                user="ana@acme.example",
                stream="ana@acme.example/screen",
                kind="screen",
                start="2026-03-04T10:00:00Z",
                end="2026-03-04T10:04:10Z",
            ),
            *media(
                "ana@acme.example", "mic", at("2026-03-04T10:03:00Z"), at("2026-03-04T10:06:00Z")
            ),
        ],
    )
    body = get_usage(api, feature="media", group_by="user", window="day")
    assert table(body) == [("ana@acme.example", "2026-03-04T00:00:00Z", 6)]
    assert Decimal(body["total"]) == 6 == balance_usage(api, "acme", "media")


# --- count and gauge -------------------------------------------------------------------------


def test_sessions_per_editor_per_day_and_an_event_stamped_now_counts(api, clock) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [
            event("session.created", "docs", at("2026-03-02T10:00:00Z"), editor="ana"),
            event("session.created", "docs", at("2026-03-02T11:00:00Z"), editor="ana"),
            event("session.created", "docs", at("2026-03-03T10:00:00Z"), editor="bob"),
            event("session.created", "docs", at("2026-03-03T12:00:00Z")),
            event("session.created", "docs", clock.now, editor=7),
        ],
    )
    body = get_usage(api, "docs", feature="sessions", group_by="editor", window="day")
    assert table(body) == [
        ("7", "2026-03-10T00:00:00Z", 1),
        ("ana", "2026-03-02T00:00:00Z", 2),
        ("bob", "2026-03-03T00:00:00Z", 1),
        (None, "2026-03-03T00:00:00Z", 1),
    ]
    assert body["rows"][0]["window_end"] == "2026-03-10T12:00:00Z"
    assert Decimal(body["total"]) == 5 == balance_usage(api, "docs", "sessions")


def test_managed_media_level_per_day_counts_the_level_carried_in(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [
            event(
                "media.volume", "studio", at("2026-02-10T10:00:00Z"), hours_delta=2
            ),  # previous cycle
            event("media.volume", "studio", at("2026-02-16T10:00:00Z"), hours_delta=8),
            event("media.volume", "studio", at("2026-02-20T10:00:00Z"), hours_delta=5),
            event("media.volume", "studio", at("2026-02-21T10:00:00Z"), hours_delta=-12),
            event("media.volume", "studio", at("2026-03-02T10:00:00Z"), hours_delta=4),
        ],
    )
    body = get_usage(api, "studio", feature="managed_media", window="day")
    assert body["from"] == "2026-02-15T00:00:00Z"  # the billing cycle from the 15th
    levels = {r["window_start"][:10]: Decimal(str(r["usage"])) for r in body["rows"]}
    assert len(levels) == 24  # 15 February to 10 March, every day
    assert (
        levels["2026-02-15"],
        levels["2026-02-16"],
        levels["2026-02-20"],
        levels["2026-02-21"],
        levels["2026-02-22"],
        levels["2026-03-02"],
        levels["2026-03-10"],
    ) == (2, 10, 15, 15, 3, 7, 7)
    assert Decimal(body["total"]) == 15 == balance_usage(api, "studio", "managed_media")
    later = get_usage(api, "studio", feature="managed_media", **{"from": "2026-02-25T00:00:00Z"})
    assert table(later) == [(None, "2026-02-25T00:00:00Z", 7)]


def test_events_are_paged_without_splitting_an_instant(api, app) -> None:  # type: ignore[no-untyped-def]
    from quotameter.events.service import events_between

    stamps = ["2026-03-02T10:00:00Z"] * 3 + ["2026-03-02T11:00:00Z"] + ["2026-03-02T12:00:00Z"] * 4
    post(api, [event("session.created", "docs", at(t), n=n) for n, t in enumerate(stamps)])
    lo, hi = to_us(at("2026-03-01T00:00:00Z")), to_us(at("2026-04-01T00:00:00Z"))
    with app.state.services.engine.connect() as conn:
        for page in range(1, 10):
            seen = [
                json.loads(row.data)["n"]
                for row in events_between(conn, "docs", "session.created", lo, hi, page)
            ]
            assert sorted(seen) == list(range(8)), page


# --- keys and errors ---------------------------------------------------------------------------


def test_a_customer_key_reads_its_own_usage_only(api) -> None:  # type: ignore[no-untyped-def]
    two_users_two_days(api)
    made = api.post("/v1/keys", json={"role": "customer", "customer": "acme"})
    assert made.status_code == 201, made.text
    own = {"Authorization": f"Bearer {made.json()['key']}"}
    r = api.get(
        PATH.format(customer="acme"), params={"feature": "media", "group_by": "user"}, headers=own
    )
    assert r.status_code == 200 and r.json()["total"] == 60
    r = api.get(PATH.format(customer="studio"), params={"feature": "managed_media"}, headers=own)
    assert (r.status_code, r.json()["error"]) == (
        403,
        "customer: this key reads customer 'acme' only",
    )
    r = api.get(
        PATH.format(customer="acme"), params={"feature": "media"}, headers={"Authorization": ""}
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("customer", "params", "status", "error"),
    [
        (
            "acme",
            {"feature": "media", "window": "week"},
            422,
            "window: must be day, hour or month (got 'week')",
        ),
        (
            "acme",
            {"feature": "media", "from": "2026-03-05T00:00:00Z", "to": "2026-03-04T00:00:00Z"},
            422,
            "from: must be before to (2026-03-05T00:00:00Z is not before 2026-03-04T00:00:00Z)",
        ),
        (
            "acme",
            {"feature": "media", "from": "2026-03-11T00:00:00Z"},
            422,
            "from: 2026-03-11T00:00:00Z is after now (2026-03-10T12:00:00Z); usage is known up to "
            "now",
        ),
        (
            "acme",
            {"feature": "media", "from": "yesterday"},
            422,
            "from: not an RFC 3339 timestamp ('yesterday')",
        ),
        (
            "acme",
            {"feature": "media", "to": "2026-03-04T00:00:00"},
            422,
            "to: must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)",
        ),
        (
            "acme",
            {"feature": "media", "to": "1970-01-01T00:00:00Z"},
            422,
            "to: must be after 1970-01-01T00:00:00Z (no event is before)",
        ),
        (
            "acme",
            {"feature": "media", "window": "hour", "from": "2025-12-01T00:00:00Z"},
            422,
            "window: hour windows from 2025-12-01T00:00:00Z to 2026-03-10T12:00:00Z are more than "
            "2232 (93 days of hours); "
            "narrow from/to or use a longer window",
        ),
        ("acme", {}, 422, "feature: required, a feature of plan 'basic' (it has: media)"),
        (
            "acme",
            {"feature": "sessions"},
            404,
            "feature: plan 'basic' of customer 'acme' has no feature 'sessions' (it has: media)",
        ),
        (
            "acme",
            {"feature": "media", "group_by": "kind"},
            422,
            "group_by: meter 'media_minutes' merges the spans of each 'user' before rounding, so "
            "its usage is grouped "
            "by 'user' only (got 'kind')",
        ),
        (
            "callco",
            {"feature": "audio_connector", "group_by": "connection"},
            422,
            "group_by: meter 'streaming_minutes' rounds the spans of each 'stream_id', so its "
            "usage is grouped "
            "by 'stream_id' only (got 'connection')",
        ),
        (
            "studio",
            {"feature": "managed_media", "group_by": "workspace"},
            422,
            "group_by: meter 'managed_media_hours' is a gauge, one level for the whole customer; "
            "it cannot be grouped "
            "(got 'workspace')",
        ),
        ("nobody", {"feature": "media"}, 404, "customer: unknown customer 'nobody'"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    api,
    customer: str,
    params: dict[str, str],
    status: int,  # type: ignore[no-untyped-def]
    error: str,
) -> None:
    r = api.get(PATH.format(customer=customer), params=params)
    assert (r.status_code, r.json()) == (status, {"error": error})


def test_93_days_of_hours_are_answered(api, clock) -> None:  # type: ignore[no-untyped-def]
    body = get_usage(
        api, feature="media", window="hour", **{"from": iso(clock.now - timedelta(days=93))}
    )
    assert len(body["rows"]) == 93 * 24 and body["total"] == 0


# --- the arithmetic, against the meters' own definitions (pure; no database) -------------------

KINDS = ("count", "sum", "max", "latest", "unique_count")
simples = st.lists(
    st.builds(
        Simple,
        t=st.integers(0, 50),
        order_key=st.sampled_from("abc"),
        value=st.decimals(-100, 100, places=2),
        unique=st.sampled_from(["x", "y", "z"]),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), items=simples)
def test_a_tally_is_the_meters_aggregation(kind: str, items: list[Simple]) -> None:
    tally = Tally(kind)
    for item in items:
        tally.add(item)
    assert tally.value() == aggregate_simple(kind, items)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    items=simples,
    cuts=st.lists(st.integers(1, 49), max_size=4, unique=True),
)
def test_each_cell_is_the_aggregation_of_its_window(
    kind: str, items: list[Simple], cuts: list[int]
) -> None:
    edges = [0, *sorted(cuts), 50]
    cells, total = simple_breakdown(kind, ((None, i) for i in items), edges, 1000)
    assert total == aggregate_simple(kind, items)
    for (_, w), value in cells.items():
        inside = [
            i
            for i in items
            if edges[w] <= i.t < edges[w + 1] or (w == len(edges) - 2 and i.t == 50)
        ]
        assert value == aggregate_simple(kind, inside)


MINUTE = 60_000_000
spans_st = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2"]), st.integers(0, 300), st.integers(1, 200), st.booleans()
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    raw=spans_st,
    cuts=st.lists(st.integers(1, 399), max_size=5, unique=True),
    mode=st.sampled_from(["ceil", "floor", "nearest"]),
    at_s=st.integers(100, 500),
)
def test_each_window_is_the_duration_arithmetic_over_that_window(
    raw, cuts, mode: str, at_s: int
) -> None:  # type: ignore[no-untyped-def]
    spec = MeterSpec.model_validate(
        {
            "event_type": "m",
            "aggregation": "duration",
            "stream_property": "s",
            "merge_property": "u",
            "rounding": {"unit_seconds": 60, "mode": mode},
            "unit": "minute",
            "idle_timeout": 90,
        }
    )
    second = 1_000_000
    spans: dict[str, list[Span]] = {}
    for user, start, length, still_open in raw:
        s = start * second
        spans.setdefault(user, []).append(
            Span(s, None, s + length * second // 2)
            if still_open
            else Span(s, s + length * second, s + length * second)
        )
    edges = [0, *(c * second for c in sorted(cuts)), 400 * second]
    at_us = at_s * second
    cells, total = duration_breakdown(spans, spec, edges, at_us, True, 1000)
    kw = {"idle_timeout_us": 90 * second, "unit_us": MINUTE, "mode": mode}
    assert total == to_unit(usage_us(spans, 0, min(400 * second, at_us), at_us, **kw), "minute")
    for user, own in spans.items():
        for w in range(len(edges) - 1):
            expected = usage_us({user: own}, edges[w], min(edges[w + 1], at_us), at_us, **kw)
            assert cells.get((user, w), Decimal(0)) == to_unit(expected, "minute"), (user, w)
    without_windows, _ = duration_breakdown(spans, spec, [0, 400 * second], at_us, True, 1000)
    assert sum(without_windows.values(), Decimal(0)) == total


def test_gauge_windows_carry_the_level_in() -> None:
    highs = gauge_windows(
        Decimal(5), [(10, Decimal(8)), (12, Decimal(1)), (30, Decimal(4))], [0, 10, 20, 30, 40]
    )
    assert highs == [5, 8, 1, 4]


def test_window_edges_are_local_days_months_and_hours() -> None:
    lo, hi = (
        to_us(at("2026-02-28T23:00:00Z")),
        to_us(at("2026-04-01T22:00:00Z")),
    )  # 1 March to 2 April, Berlin
    days = window_edges("day", lo, hi, "Europe/Berlin", 100)
    assert len(days) == 33 and days[29] - days[28] == 23 * 3_600_000_000  # 29 March: 23 hours
    assert window_edges("month", lo, hi, "Europe/Berlin", 100) == [
        lo,
        to_us(at("2026-03-31T22:00:00Z")),
        hi,
    ]
    # Kolkata is UTC+5:30: its hours begin at :30 UTC; the first window is cut at `lo`.
    hours = window_edges(
        "hour",
        to_us(at("2026-03-02T10:00:00Z")),
        to_us(at("2026-03-02T12:00:00Z")),
        "Asia/Kolkata",
        10,
    )
    assert [from_us(e) for e in hours] == [
        at(t)
        for t in (
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:30:00Z",
            "2026-03-02T11:30:00Z",
            "2026-03-02T12:00:00Z",
        )
    ]
    with pytest.raises(TooMany):
        window_edges("hour", lo, hi, "UTC", 24)
