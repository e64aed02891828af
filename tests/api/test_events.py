"""POST /v1/events: dedup, per-event rejection, batches, commit before the answer."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from support import ADMIN, ADMIN_KEY, at, demo_catalog, event, iso

CATALOG = demo_catalog()
CATALOG["meters"]["bytes"] = {
    "event_type": "upload",
    "aggregation": "sum",
    "value_property": "bytes",
}
CATALOG["plans"]["basic"]["entitlements"]["uploads"] = {"meter": "bytes"}
WHEN = at("2026-03-10T09:00:00Z")


@pytest.fixture
def api(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    return client


def sessions(client, when: str = "2026-03-20T00:00:00Z") -> Decimal:  # type: ignore[no-untyped-def]
    r = client.get("/v1/customers/docs/entitlements/sessions", params={"at": when})
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


def test_a_bad_event_is_reported_by_index_and_the_good_ones_are_kept(api) -> None:  # type: ignore[no-untyped-def]
    good = [event("session.created", "docs", WHEN) for _ in range(3)]
    missing_id = event("session.created", "docs", WHEN)
    del missing_id["id"]
    naive = event("session.created", "docs", "2026-03-10T09:00:00")
    stranger = event("session.created", "nobody", WHEN)
    no_bytes = event("upload", "acme", WHEN, size=3)
    text_bytes = event("upload", "acme", WHEN, bytes="many")
    batch = [good[0], missing_id, good[1], naive, stranger, no_bytes, text_bytes, "nope", good[2]]
    r = api.post("/v1/events", json=batch)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert body["rejected"] == [
        {"index": 1, "error": "id: required"},
        {"index": 3, "error": "time: must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)"},
        {"index": 4, "error": "subject: unknown customer 'nobody'"},
        {"index": 5, "error": "data.bytes: required by this event's meter"},
        {"index": 6, "error": "data.bytes: must be a number (got 'many')"},
        {"index": 7, "error": "event: must be a JSON object"},
    ]
    assert sessions(api) == 3


def test_a_repeat_is_a_duplicate_counted_once(api) -> None:  # type: ignore[no-untyped-def]
    batch = [event("session.created", "docs", WHEN) for _ in range(4)]
    first = api.post("/v1/events", json=[*batch, batch[0]]).json()
    assert (first["accepted"], first["duplicates"]) == (4, 1)
    again = api.post("/v1/events", json=batch).json()
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 4, [])
    assert sessions(api) == 4


def test_same_id_from_another_source_is_another_event(api) -> None:  # type: ignore[no-untyped-def]
    a = event("session.created", "docs", WHEN, source="edge-1")
    b = dict(a, source="edge-2")
    assert api.post("/v1/events", json=[a, b]).json()["accepted"] == 2


def test_one_event_alone_and_the_cloudevents_batch_content_type(api) -> None:  # type: ignore[no-untyped-def]
    assert (
        api.post("/v1/events", json=event("session.created", "docs", WHEN)).json()["accepted"] == 1
    )
    batch = [event("session.created", "docs", WHEN) for _ in range(2)]
    r = api.post(
        "/v1/events",
        content=orjson.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert r.json()["accepted"] == 2
    assert sessions(api) == 3


def test_an_event_without_time_takes_the_receive_time(api, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now = at("2026-05-02T08:00:00Z")
    api.post("/v1/events", json=event("session.created", "docs", None))
    assert sessions(api, "2026-05-31T00:00:00Z") == 1
    assert sessions(api, "2026-04-30T00:00:00Z") == 0
    assert sessions(api, iso(clock.now)) == 1


def test_decimal_values_are_summed_exactly(api) -> None:  # type: ignore[no-untyped-def]
    api.post("/v1/events", json=[event("upload", "acme", WHEN, bytes=0.1) for _ in range(3)])
    r = api.get("/v1/customers/acme/entitlements/uploads", params={"at": "2026-03-20T00:00:00Z"})
    assert r.json()["usage"] == 0.3  # the JSON number 0.3, not 0.30000000000000004
    assert b'"usage":0.3' in r.content


def test_malformed_body_is_refused_with_the_reason(api) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/events", content=b"[{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("body: not valid JSON")


def test_an_acknowledged_event_is_committed(api, db_url, clock) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from quotameter.server import create_app
    from quotameter.settings import Settings

    api.post("/v1/events", json=[event("session.created", "docs", WHEN) for _ in range(5)])
    fresh = create_app(
        Settings(database_url=db_url, scheduler=False, tune_gc=False, admin_key=ADMIN_KEY),
        clock=clock,
    )  # another process, same database
    with TestClient(fresh, headers=ADMIN) as other:
        assert sessions(other) == 5
    fresh.state.services.engine.dispose()


def test_balance_errors_name_the_field(api) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/v1/customers/nobody/entitlements/media")
    assert (r.status_code, r.json()["error"]) == (404, "customer: unknown customer 'nobody'")
    r = api.get("/v1/customers/acme/entitlements/sessions")
    assert r.status_code == 404 and r.json()["error"].startswith(
        "feature: plan 'basic' of customer 'acme' has no"
    )
    r = api.get("/v1/customers/acme/entitlements/media", params={"at": "2026-03-01T00:00:00"})
    assert (r.status_code, r.json()["error"]) == (
        422,
        "at: must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)",
    )


def test_an_unexpected_error_is_a_json_500_without_trace(api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from quotameter.events import service

    def boom(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.repository, "insert_new", boom)
    from fastapi.testclient import TestClient

    quiet = TestClient(api.app, raise_server_exceptions=False, headers=ADMIN)
    r = quiet.post("/v1/events", json=[event("session.created", "docs", WHEN)])
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the server log has the details"}
    assert "secret" not in r.text


def test_values_the_database_cannot_hold_are_refused_not_a_server_error(api) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses NUL in text and numbers past NUMERIC(38, 12): such an event is
    refused with its field, the rest of the batch is kept, on both databases alike."""
    nul_type = event("session.created", "docs", WHEN)
    nul_type["type"] = "session.\x00created"
    batch = [
        nul_type,
        event("upload", "acme", WHEN, bytes=1e30),
        event("upload", "acme", WHEN, bytes="-1E+15"),
        event("upload", "acme", WHEN, bytes="0.1234567890123456789"),
        event("session.created", "docs", WHEN),
    ]
    r = api.post("/v1/events", json=batch)
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        {"index": 0, "error": "type: must not contain control characters (U+0000 to U+001F)"},
        {"index": 1, "error": "data.bytes: must be less than 10^15 in magnitude (got 1e+30)"},
        {"index": 2, "error": "data.bytes: must be less than 10^15 in magnitude (got '-1E+15')"},
    ]
    assert sessions(api) == 1
    # More than 12 decimal places are rounded as the database column would, on SQLite too.
    usage = api.get(
        "/v1/customers/acme/entitlements/uploads", params={"at": "2026-03-20T00:00:00Z"}
    ).json()["usage"]
    assert Decimal(str(usage)) == Decimal("0.123456789012")


# --- timestamps: RFC 3339 only --------------------------------------------------------------

NOT_RFC3339 = [
    "2026-W10-2T09:00:00Z",
    "20260310T090000Z",
    "2026-03-10T01Z",
    "2026-03-10T09:00:00+01:00:30",
    "2026-03-10\x0009:00:00Z",
    "2026-03-10 09:00:00Z",
    "2026-03-10T09:00Z",
]


def test_event_times_that_are_not_rfc_3339_are_refused_by_index(api) -> None:  # type: ignore[no-untyped-def]
    plain = [event("session.created", "docs", text) for text in NOT_RFC3339]
    checked_in_full = dict(
        event("session.created", "docs", "2026-W10-2T09:00:00Z"), id=7
    )  # a number for an id
    span = event(
        "connector.stream",
        "callco",
        WHEN,
        stream_id="c1",
        start="20260310T090000Z",
        end="2026-03-10T10:00:00Z",
    )
    good = event("session.created", "docs", WHEN)
    r = api.post("/v1/events", json=[*plain, checked_in_full, span, good])
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        *(
            {"index": i, "error": f"time: not an RFC 3339 timestamp ({text!r})"}
            for i, text in enumerate(NOT_RFC3339)
        ),
        {
            "index": len(NOT_RFC3339),
            "error": "time: not an RFC 3339 timestamp ('2026-W10-2T09:00:00Z')",
        },
        {
            "index": len(NOT_RFC3339) + 1,
            "error": "data.start: not an RFC 3339 timestamp ('20260310T090000Z')",
        },
    ]
    assert r.json()["accepted"] == 1
    assert sessions(api) == 1


def test_every_rfc_3339_form_is_taken_at_the_instant_it_denotes(api) -> None:  # type: ignore[no-untyped-def]
    # Lower case t and z, an offset, and nanoseconds (dropped past the microsecond) mark the
    # same instant: the last microsecond of February, in the February period.
    last = [
        "2026-02-28t23:59:59.999999999z",
        "2026-03-01T00:59:59.9999999+01:00",
        "2026-02-28T22:59:59.999999-01:00",
    ]
    r = api.post("/v1/events", json=[event("session.created", "docs", text) for text in last])
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert sessions(api, "2026-02-28T23:59:59.999999Z") == 3
    assert sessions(api, "2026-03-01T00:00:00Z") == 0
    leap = api.post(
        "/v1/events", json=[dict(event("session.created", "docs", "2016-12-31T23:59:60Z"), id=8)]
    ).json()
    assert (
        leap["accepted"] == 1
    )  # a leap second is the first second of the next minute, as in Unix time
    assert sessions(api, "2017-01-01T00:00:00Z") == 1


@pytest.mark.parametrize("text", NOT_RFC3339)
def test_instants_in_queries_and_bodies_are_rfc_3339_only(api, text: str) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/v1/customers/acme/entitlements/media", params={"at": text})
    assert (r.status_code, r.json()) == (
        422,
        {"error": f"at: not an RFC 3339 timestamp ({text!r})"},
    )
    r = api.patch("/v1/customers/acme", json={"seats": 3, "effective_at": text})
    assert (r.status_code, r.json()) == (
        422,
        {"error": f"effective_at: not an RFC 3339 timestamp ({text!r})"},
    )


def test_an_offsets_plus_sign_left_unescaped_in_a_query_still_reads(api) -> None:  # type: ignore[no-untyped-def]
    api.post("/v1/events", json=[event("session.created", "docs", WHEN)])
    # `?at=2026-03-10T10:00:00+01:00` unescaped: the query string makes the `+` a space.
    r = api.get("/v1/customers/docs/entitlements/sessions?at=2026-03-10T10:00:00+01:00")
    assert r.status_code == 200 and r.json()["usage"] == 1, r.text
    r = api.get("/v1/customers/docs/entitlements/sessions?at=2026-03-10T09:59:59+01:00")
    assert r.status_code == 200 and r.json()["usage"] == 0, r.text


# --- numbers in data --------------------------------------------------------------------------


def uploads(client) -> Decimal:  # type: ignore[no-untyped-def]
    r = client.get("/v1/customers/acme/entitlements/uploads", params={"at": "2026-03-20T00:00:00Z"})
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


def test_numbers_are_json_numbers_or_plain_decimal_strings(api) -> None:  # type: ignore[no-untyped-def]
    refused = [
        "1_000",
        "\u0661\u0662",
        " 1 ",
        "1 ",
        "Infinity",
        "-Infinity",
        "NaN",
        "sNaN",
        ".5",
        "5.",
        "0x10",
        "1,5",
        "\uff11",
        "",
    ]
    taken = [7, 0.25, "12", "+1", "-2.5", "1e2", "2.5E-1"]
    r = api.post(
        "/v1/events", json=[event("upload", "acme", WHEN, bytes=v) for v in [*refused, *taken]]
    )
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        {"index": i, "error": f"data.bytes: must be a number (got {v!r})"}
        for i, v in enumerate(refused)
    ]
    assert r.json()["accepted"] == len(taken)
    assert uploads(api) == Decimal("7") + Decimal("0.25") + 12 + 1 - Decimal("2.5") + 100 + Decimal(
        "0.25"
    )


def test_a_huge_exponent_is_refused_by_field_not_a_server_error(api) -> None:  # type: ignore[no-untyped-def]
    r = api.post(
        "/v1/events",
        json=[
            event("upload", "acme", WHEN, bytes="1e999999999"),
            event("upload", "acme", WHEN, bytes="1e-999999999"),
            event("upload", "acme", WHEN, bytes="3"),
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        {
            "index": 0,
            "error": "data.bytes: must be less than 10^15 in magnitude (got '1e999999999')",
        }
    ]
    assert uploads(api) == 3  # 10^-999999999 is 0 at twelve decimal places


# --- what data may hold -----------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """`data` as JSON text with `depth` levels of objects and arrays, itself the first (too deep
    for orjson to write, so it is written by hand)."""
    opening = "".join("[" if level % 2 == 0 else '{"a":' for level in range(depth - 1))
    closing = "".join("]" if level % 2 == 0 else "}" for level in reversed(range(depth - 1)))
    return f'{{"deep":{opening}1{closing}}}'.encode()


def test_data_nested_too_deep_is_refused_by_index_and_the_batch_kept(api) -> None:  # type: ignore[no-untyped-def]
    def deep(depth: int, **fields: object) -> bytes:
        envelope = orjson.dumps(
            {**event("session.created", "docs", WHEN), "data": "DATA", **fields}
        )
        return envelope.replace(b'"DATA"', nested(depth))

    # 1,022 levels of data is as deep as a batch body may nest at all (1,024 with the array
    # and the event).
    batch = [
        orjson.dumps(event("session.created", "docs", WHEN)),
        deep(254),
        deep(255),
        deep(1022),
        deep(600, id=9, extension="checked by Pydantic"),
        orjson.dumps(event("session.created", "docs", WHEN)),
    ]
    r = api.post(
        "/v1/events",
        content=b"[" + b",".join(batch) + b"]",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": [
            {
                "index": i,
                "error": f"data: nested {depth} levels deep, at most 254 "
                "(objects and arrays, data itself the first)",
            }
            for i, depth in ((2, 255), (3, 1022), (4, 600))
        ],
    }
    assert sessions(api) == 3


def media_event(time: str, action: str, **data: object) -> dict[str, object]:
    return event("media.activity", "acme", time, kind="mic", action=action, **data)


def media_minutes(client, when: str = "2026-03-10T12:00:00Z") -> Decimal:  # type: ignore[no-untyped-def]
    r = client.get("/v1/customers/acme/entitlements/media", params={"at": when})
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


def test_a_nul_in_a_stream_or_merge_key_is_refused_by_field_on_every_database(api) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL cannot hold NUL in text: such an event was a 500 there and lost its batch."""
    batch = [
        media_event("2026-03-10T09:00:00Z", "start", user="u\x00", stream="s"),
        media_event("2026-03-10T09:00:00Z", "start", user="u", stream="s\x00"),
        media_event("2026-03-10T09:00:00Z", "start", user="u", stream="s"),
        media_event("2026-03-10T09:00:00Z", "start", user="u" * 257, stream="s"),
        media_event("2026-03-10T09:00:00Z", "start", user="\u00e9" * 129, stream="s"),
        event(
            "media.activity",
            "acme",
            WHEN,
            kind="mic",
            user="u",
            stream="\u00e9" * 128,  # 256 bytes: taken
            start="2026-03-10T09:00:00Z",
            end="2026-03-10T09:10:00Z",
        ),
        media_event("2026-03-10T09:10:00Z", "stop", user="u", stream="s"),
    ]
    r = api.post("/v1/events", json=batch)
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        {"index": 0, "error": "data.user: must not contain NUL characters (U+0000)"},
        {"index": 1, "error": "data.stream: must not contain NUL characters (U+0000)"},
        {"index": 3, "error": "data.user: at most 256 bytes in UTF-8 (got 257)"},
        {"index": 4, "error": "data.user: at most 256 bytes in UTF-8 (got 258)"},
    ]
    assert r.json()["accepted"] == 3
    assert media_minutes(api) == 10  # u's two streams, merged


def test_unique_values_that_the_database_cannot_index_are_refused_by_field(client) -> None:  # type: ignore[no-untyped-def]
    catalog = demo_catalog()
    catalog["meters"]["rooms"] = {
        "event_type": "room.joined",
        "aggregation": "unique_count",
        "value_property": "room",
    }
    catalog["plans"]["basic"]["entitlements"]["rooms"] = {"meter": "rooms"}
    assert client.put("/v1/catalog", json=catalog).status_code == 200
    rooms = ["r\x00", "x" * 1022, "x" * 1023, {"name": "\u00e9" * 600}, "r\x00"]
    r = client.post(
        "/v1/events", json=[event("room.joined", "acme", WHEN, room=room) for room in rooms]
    )
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [
        {"index": 2, "error": "data.room: at most 1024 bytes once written as JSON (got 1025)"},
        {"index": 3, "error": "data.room: at most 1024 bytes once written as JSON (got 1211)"},
    ]
    usage = client.get(
        "/v1/customers/acme/entitlements/rooms", params={"at": "2026-03-20T00:00:00Z"}
    ).json()["usage"]
    assert usage == 2  # "r\x00" twice is one room; a NUL is kept, written as JSON


def test_streams_of_two_users_never_share_a_key(api) -> None:  # type: ignore[no-untyped-def]
    """User "x\\x01y" with stream "z" and user "x" with stream "y\\x01z" were joined to one key,
    so the second start was taken for the same stream: ten minutes instead of twenty."""
    batch = [
        media_event("2026-03-10T09:00:00Z", "start", user="x\x01y", stream="z"),
        media_event("2026-03-10T09:00:00Z", "start", user="x", stream="y\x01z"),
        media_event("2026-03-10T09:10:00Z", "stop", user="x\x01y", stream="z"),
        media_event("2026-03-10T09:20:00Z", "stop", user="x", stream="y\x01z"),
    ]
    assert api.post("/v1/events", json=batch).json()["rejected"] == []
    assert media_minutes(api) == 10 + 20
    r = api.get(
        "/v1/customers/acme/usage",
        params={"feature": "media", "group_by": "user", "at": "2026-03-10T12:00:00Z"},
    )
    assert r.status_code == 200, r.text
    assert sorted((row["group"], row["usage"]) for row in r.json()["rows"]) == [
        ("x", 20),
        ("x\x01y", 10),
    ]


def test_the_longest_keys_fit_once_joined_and_escaped(api) -> None:  # type: ignore[no-untyped-def]
    # 256 bytes of a user made of join characters is 512 once escaped, plus 1 and a 256-byte stream.
    span = event(
        "media.activity",
        "acme",
        WHEN,
        kind="mic",
        user="\x01" * 256,
        stream="s" * 256,
        start="2026-03-10T09:00:00Z",
        end="2026-03-10T09:05:00Z",
    )
    r = api.post("/v1/events", json=[span])
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}, r.text
    assert media_minutes(api) == 5
