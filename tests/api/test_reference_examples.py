"""The worked examples of the four reference documents, end to end through the HTTP API."""

from __future__ import annotations

from decimal import Decimal

import pytest

from support import at, demo_catalog, event, iso, minutes, stream

T0 = at("2026-03-10T09:00:00Z")


@pytest.fixture
def api(client):  # type: ignore[no-untyped-def]
    extra = {f"call{n}": {"plan": "connector", "billing_anchor": "2026-01-01"} for n in range(1, 5)}
    r = client.put("/v1/catalog", json=demo_catalog(**extra))
    assert r.status_code == 200, r.text
    return client


def post(client, events) -> dict:  # type: ignore[no-untyped-def]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rejected"] == [], body
    return body


def usage(client, customer: str, feature: str, when=None) -> Decimal:  # type: ignore[no-untyped-def]
    params = {"at": iso(when)} if when else {}
    r = client.get(f"/v1/customers/{customer}/entitlements/{feature}", params=params)
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


def connector(customer: str, stream_id: str, start_min: int, stop_min: int) -> list[dict]:
    return stream(
        "connector.stream",
        customer,
        T0 + minutes(start_min),
        T0 + minutes(stop_min),
        stream_id=stream_id,
    )


def test_streaming_case_1_one_participant_27_minutes(api) -> None:  # type: ignore[no-untyped-def]
    post(api, connector("call1", "A", 1, 28))
    assert usage(api, "call1", "audio_connector") == 27


def test_streaming_case_2_two_connections_57_minutes(api) -> None:  # type: ignore[no-untyped-def]
    post(api, connector("call2", "A", 1, 28) + connector("call2", "B", 0, 30))
    assert usage(api, "call2", "audio_connector") == 57


def test_streaming_case_3_two_participants_one_connection_60_minutes(api) -> None:  # type: ignore[no-untyped-def]
    # Same WebSocket connection, two StreamIDs: each participant is billed on its own.
    post(
        api,
        [
            *stream(
                "connector.stream", "call3", T0, T0 + minutes(30), stream_id="A", connection="ws-1"
            ),
            *stream(
                "connector.stream", "call3", T0, T0 + minutes(30), stream_id="B", connection="ws-1"
            ),
        ],
    )
    assert usage(api, "call3", "audio_connector") == 60


def test_streaming_case_4_participant_without_connection_counts_nothing(api) -> None:  # type: ignore[no-untyped-def]
    post(api, connector("call4", "A", 0, 30))
    assert usage(api, "call4", "audio_connector") == 30


def test_screen_share_of_5_min_10_s_counts_6_minutes(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        stream(
            "media.activity",
            "acme",
            T0,
            T0 + minutes(5) + minutes(1 / 6),
            user="u1",
            stream="u1/screen",
            kind="screen",
        ),
    )
    assert usage(api, "acme", "media") == 6


def test_mic_camera_and_screen_together_count_once(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [
            *stream(
                "media.activity",
                "acme",
                T0,
                T0 + minutes(10),
                user="u1",
                stream="u1/mic",
                kind="mic",
            ),
            *stream(
                "media.activity",
                "acme",
                T0,
                T0 + minutes(10),
                user="u1",
                stream="u1/camera",
                kind="camera",
            ),
            *stream(
                "media.activity",
                "acme",
                T0 + minutes(2),
                T0 + minutes(7),
                user="u1",
                stream="u1/screen",
                kind="screen",
            ),
        ],
    )
    assert usage(api, "acme", "media") == 10


def test_listening_does_not_count_and_other_users_add_up(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [
            *stream(
                "media.activity",
                "acme",
                T0,
                T0 + minutes(30),
                user="u1",
                stream="u1/listen",
                kind="listen",
            ),
            *stream(
                "media.activity",
                "acme",
                T0,
                T0 + minutes(10),
                user="u1",
                stream="u1/mic",
                kind="mic",
            ),
            *stream(
                "media.activity",
                "acme",
                T0,
                T0 + minutes(4),
                user="guest-7",
                stream="guest-7/mic",
                kind="mic",
            ),
        ],
    )
    assert usage(api, "acme", "media") == 14


def test_open_stream_accrues_to_the_instant_asked_about(api, clock) -> None:  # type: ignore[no-untyped-def]
    post(api, stream("media.activity", "acme", T0, None, user="u1", stream="u1/mic", kind="mic"))
    assert usage(api, "acme", "media", T0 + minutes(3)) == 3
    assert usage(api, "acme", "media", T0 + minutes(3) + minutes(0.01)) == 4
    clock.now = T0 + minutes(42)
    assert usage(api, "acme", "media") == 42


def test_span_across_month_end_is_split_and_each_part_rounded(api) -> None:  # type: ignore[no-untyped-def]
    # 23:59:30 → 00:00:45: 30 s in March (1 minute) and 45 s in April (1 minute), not 2
    # minutes together
    start, end = at("2026-03-31T23:59:30Z"), at("2026-04-01T00:00:45Z")
    post(api, stream("media.activity", "acme", start, end, user="u1", stream="u1/mic", kind="mic"))
    assert usage(api, "acme", "media", at("2026-03-31T23:59:59Z")) == 1
    assert usage(api, "acme", "media", at("2026-04-02T00:00:00Z")) == 1


def test_managed_media_is_billed_on_the_maximum_of_the_cycle(api) -> None:  # type: ignore[no-untyped-def]
    # studio's billing cycle runs from the 15th; 10 h carried in, up to 30 h, back down to 20 h.
    base = at("2026-03-01T10:00:00Z")
    post(
        api,
        [
            event("media.volume", "studio", base, hours_delta=10),
            event("media.volume", "studio", at("2026-03-16T10:00:00Z"), hours_delta=12.5),
            event("media.volume", "studio", at("2026-03-20T10:00:00Z"), hours_delta=7.5),
            event("media.volume", "studio", at("2026-03-25T10:00:00Z"), hours_delta=-10),
        ],
    )
    r = api.get(
        "/v1/customers/studio/entitlements/managed_media", params={"at": "2026-04-01T00:00:00Z"}
    )
    body = r.json()
    assert Decimal(str(body["usage"])) == 30
    assert Decimal(str(body["level"])) == 20
    assert body["period"] == {"start": "2026-03-15T00:00:00Z", "end": "2026-04-15T00:00:00Z"}
    # The next cycle starts with the 20 h carried in: its maximum so far is 20.
    assert usage(api, "studio", "managed_media", at("2026-04-20T00:00:00Z")) == 20


def test_coediting_sessions_are_counted_per_calendar_month(api) -> None:  # type: ignore[no-untyped-def]
    post(
        api,
        [event("session.created", "docs", at(f"2026-03-0{d}T10:00:00Z")) for d in range(1, 6)],
    )
    post(api, [event("session.created", "docs", at("2026-04-01T00:00:00Z"))])
    assert usage(api, "docs", "sessions", at("2026-03-31T23:59:59Z")) == 5
    assert usage(api, "docs", "sessions", at("2026-04-01T00:00:00Z")) == 1
