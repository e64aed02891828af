"""POST /v1/events speaks the CloudEvents HTTP binding: binary, structured and batched mode,
with the official SDK; content types it cannot read get a 415; the served document makes a
client with openapi-python-client that records events."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from support import ADMIN, ADMIN_KEY, demo_catalog, event, running

WHEN = "2026-03-10T09:00:00Z"
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "b1",
    "ce-source": "edge%201%2F%C3%A9",
    "ce-type": "session.created",
    "ce-subject": "docs",
    "ce-time": "2026-03-10T10:00:00%2B01:00",
    "ce-tenant": "t%201",
    "content-type": "application/json",
}
ACCEPTED = (
    "application/json, application/cloudevents+json or application/cloudevents-batch+json (UTF-8), "
    "or CloudEvents binary mode: ce-* headers with JSON data (application/json or an "
    "application/*+json type)"
)


@pytest.fixture
def api(client):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    return client


def sessions(client: Any, when: str = "2026-03-20T00:00:00Z") -> Decimal:
    r = client.get("/v1/customers/docs/entitlements/sessions", params={"at": when})
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()["usage"]))


# --- binary mode -----------------------------------------------------------------------------


def test_binary_mode_records_the_event_its_headers_describe(api) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/events", content=b'{"plan": "paid"}', headers=BINARY)
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0, "rejected": []})
    assert sessions(api, "2026-03-10T08:59:59Z") == 0  # ce-time 10:00+01:00 is 09:00Z
    assert sessions(api, WHEN) == 1
    # The same event, structured: the percent-decoded source makes it a repeat.
    same = {
        "specversion": "1.0",
        "id": "b1",
        "source": "edge 1/\u00e9",
        "type": "session.created",
        "subject": "docs",
        "time": WHEN,
        "data": {"plan": "paid"},
    }
    r = api.post(
        "/v1/events",
        content=orjson.dumps(same),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.json() == {"accepted": 0, "duplicates": 1, "rejected": []}


def test_binary_mode_without_data_or_content_type_is_an_event_without_data(api) -> None:  # type: ignore[no-untyped-def]
    headers = {k: v for k, v in BINARY.items() if k != "content-type"}
    r = api.post("/v1/events", content=b"", headers=headers)
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}, r.text
    assert sessions(api) == 1


def test_binary_mode_events_are_checked_like_any_other(api) -> None:  # type: ignore[no-untyped-def]
    def post(body: bytes, **headers: str) -> Any:
        return api.post("/v1/events", content=body, headers={**BINARY, **headers}).json()

    missing_id = {k: v for k, v in BINARY.items() if k != "ce-id"}
    assert api.post("/v1/events", content=b"{}", headers=missing_id).json()["rejected"] == [
        {"index": 0, "error": "id: required"}
    ]
    assert post(b"[1, 2]", **{"ce-id": "b2"})["rejected"] == [
        {"index": 0, "error": "data: must be a JSON object"}
    ]
    assert post(b"{}", **{"ce-id": "b3", "ce-time": "20260310T090000Z"})["rejected"] == [
        {"index": 0, "error": "time: not an RFC 3339 timestamp ('20260310T090000Z')"}
    ]
    assert post(b"{}", **{"ce-id": "b4", "ce-specversion": "0.3"})["rejected"][0][
        "error"
    ].startswith("specversion:")
    assert sessions(api) == 0


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        (
            {"content-type": "text/plain"},
            415,
            "Content-Type: 'text/plain' is not accepted as the data of a binary-mode event; "
            "the data must be JSON (application/json or an application/*+json type)",
        ),
        ({"ce-id": "%FF"}, 400, "ce-id: not percent-encoded UTF-8 (b'%FF')"),
        (
            {"ce-data": "{}"},
            400,
            "ce-data: not a CloudEvents attribute header (ce- and 1 to 64 lower-case letters and "
            "digits, not data, data_base64, datacontenttype)",
        ),
    ],
)
def test_a_binary_mode_request_that_cannot_be_read_is_refused_whole(
    api, headers, status, error
) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/events", content=b"{}", headers={**BINARY, **headers})
    assert (r.status_code, r.json()) == (status, {"error": error})


# --- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=UTF-8",
        "Application/JSON",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    ],
)
def test_json_and_the_cloudevents_types_are_read(api, content_type: str | None) -> None:  # type: ignore[no-untyped-def]
    request = api.build_request(
        "POST", "/v1/events", content=orjson.dumps([event("session.created", "docs", WHEN)])
    )
    if content_type is None:
        request.headers.pop("content-type", None)
    else:
        request.headers["content-type"] = content_type
    r = api.send(request)
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}, r.text


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/vnd.acme+json",
    ],
)
def test_other_content_types_are_refused_with_415_naming_what_is_accepted(
    api, content_type: str
) -> None:  # type: ignore[no-untyped-def]
    r = api.post(
        "/v1/events",
        content=orjson.dumps(event("session.created", "docs", WHEN)),
        headers={"content-type": content_type},
    )
    assert (r.status_code, r.json()) == (
        415,
        {"error": f"Content-Type: {content_type!r} is not accepted; send {ACCEPTED}"},
    )
    assert sessions(api) == 0


def test_json_in_another_charset_is_refused_with_415(api) -> None:  # type: ignore[no-untyped-def]
    r = api.post(
        "/v1/events",
        content=orjson.dumps(event("session.created", "docs", WHEN)),
        headers={"content-type": "application/json; charset=latin-1"},
    )
    assert (r.status_code, r.json()) == (
        415,
        {
            "error": "Content-Type: 'application/json; charset=latin-1' is not "
            "accepted: JSON is UTF-8"
        },
    )


# --- the official SDK, to a real server ------------------------------------------------------


def sdk_event(id_: str, **data: Any) -> SdkEvent:
    return SdkEvent(
        attributes={
            "id": id_,
            "source": "sdk edge/\u00e9",
            "type": "session.created",
            "subject": "docs",
            "time": datetime(2026, 3, 10, 9, tzinfo=UTC),
            "tenant": "t1",
        },
        data=data,
    )


def test_events_built_with_the_cloudevents_sdk_are_recorded_in_every_mode(
    db_url: str, clock
) -> None:  # type: ignore[no-untyped-def]
    with (
        running(db_url, clock) as (_app, _server, url),
        httpx.Client(base_url=url, headers=ADMIN) as http,
    ):
        assert http.put("/v1/catalog", json=demo_catalog()).status_code == 200

        def send(message: Any) -> Any:
            r = http.post("/v1/events", content=message.body, headers=dict(message.headers))
            assert r.status_code == 200, r.text
            return r.json()

        assert send(to_binary_event(sdk_event("sdk-1", plan="paid"))) == {
            "accepted": 1,
            "duplicates": 0,
            "rejected": [],
        }
        assert send(to_structured_event(sdk_event("sdk-2", plan="paid")))["accepted"] == 1
        # The SDK has no batch format: the batch is a JSON array of structured events
        # (HTTP binding, 3.3).
        batch = (
            b"[" + b",".join(JSONFormat().write(sdk_event(f"sdk-{i}")) for i in (3, 4, 1)) + b"]"
        )
        r = http.post(
            "/v1/events",
            content=batch,
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert r.json() == {
            "accepted": 2,
            "duplicates": 1,
            "rejected": [],
        }  # sdk-1 came in binary mode already
        assert sessions(http) == 4


# --- a client generated from the served document ---------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package openapi-python-client writes from the served document, imported."""
    from fastapi.testclient import TestClient

    from quotameter.server import create_app
    from quotameter.settings import Settings

    work = tmp_path_factory.mktemp("openapi")
    app = create_app(
        Settings(
            database_url=f"sqlite:///{work / 'doc.sqlite3'}",
            scheduler=False,
            tune_gc=False,
            admin_key=ADMIN_KEY,
        )
    )
    with TestClient(app) as client:
        (work / "openapi.json").write_text(json.dumps(client.get("/openapi.json").json()))
    app.state.services.engine.dispose()
    # The generator (0.29) writes `isinstance(body, list[...])` for an array body among several
    # media types, which fails at once; it skips a media type it does not know, so the batch
    # type is marked unknown. The client sends single events as application/cloudevents+json.
    # (Its other slip, `Unset` used unimported with several media types, does not arise: the
    # optional ce- header parameters of binary mode import it.)
    (work / "config.json").write_text(
        json.dumps(
            {"content_type_overrides": {"application/cloudevents-batch+json": "unsupported/batch"}}
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            "openapi.json",
            "--output-path",
            "quotameter_generated_client",
            "--meta",
            "none",
            "--config",
            "config.json",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module("quotameter_generated_client")
    finally:
        sys.path.remove(str(work))
        for name in [
            m for m in sys.modules if m.partition(".")[0] == "quotameter_generated_client"
        ]:
            del sys.modules[name]


def test_a_client_generated_from_the_document_records_an_event(
    generated: Any, db_url: str, clock
) -> None:  # type: ignore[no-untyped-def]
    post_events = importlib.import_module(
        f"{generated.__name__}.api.events.post_events_v1_events_post"
    )
    models = importlib.import_module(f"{generated.__name__}.models")
    with (
        running(db_url, clock) as (_app, _server, url),
        httpx.Client(base_url=url, headers=ADMIN) as http,
    ):
        assert http.put("/v1/catalog", json=demo_catalog()).status_code == 200
        client = generated.AuthenticatedClient(base_url=url, token=ADMIN_KEY)
        body = models.CloudEvent(
            id="gen-1",
            source="generated",
            type_="session.created",
            subject="docs",
            time=datetime(2026, 3, 10, 9, tzinfo=UTC),
            data=models.CloudEventData.from_dict({"plan": "paid"}),
        )
        answer = post_events.sync_detailed(client=client, body=body)
        assert answer.status_code == 200, answer.content
        assert (answer.parsed.accepted, answer.parsed.duplicates, answer.parsed.rejected) == (
            1,
            0,
            [],
        )
        assert sessions(http, WHEN) == 1


def test_the_document_names_the_event_schema_and_its_media_types(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    ref = {"$ref": "#/components/schemas/CloudEvent"}
    assert body == {
        "application/json": {"schema": ref},
        "application/cloudevents+json": {"schema": ref},
        "application/cloudevents-batch+json": {"schema": {"type": "array", "items": ref}},
    }
    assert {"id", "source", "type", "subject"} <= set(
        doc["components"]["schemas"]["CloudEvent"]["required"]
    )
    assert "415" in doc["paths"]["/v1/events"]["post"]["responses"]
