"""The served OpenAPI document, fuzzed by schemathesis: no request gets a server error, and
every answer has a status and a body that the document declares for it.

The app runs in-process on its own SQLite file, with the demo catalog applied, so that paths
name real customers and features as often as made-up ones.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

from support import ADMIN, ADMIN_KEY, demo_catalog

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.status_code_conformance,
]


def make_app(path: Path) -> FastAPI:
    from quotameter.server import create_app
    from quotameter.settings import Settings

    settings_ = Settings(
        database_url=f"sqlite:///{path}", scheduler=False, tune_gc=False, admin_key=ADMIN_KEY
    )
    return create_app(settings_, clock=lambda: NOW)


def apply_demo_catalog(app: FastAPI) -> None:
    with TestClient(app, headers=ADMIN) as client:
        r = client.put("/v1/catalog", json=demo_catalog())
        assert r.status_code == 200, r.text


PLANS = list(demo_catalog()["plans"])
# Each demo customer with a feature of its plan.
OWN_FEATURES = [
    ("acme", "media"),
    ("studio", "managed_media"),
    ("docs", "sessions"),
    ("callco", "audio_connector"),
]


def prepare(path: Path) -> tuple[FastAPI, dict[str, list[str]]]:
    """The app with the demo catalog and a customer key, and real values for path parameters."""
    app = make_app(path)
    apply_demo_catalog(app)
    with TestClient(app, headers=ADMIN) as client:
        key = client.post("/v1/keys", json={"role": "customer", "customer": "acme"})
        assert key.status_code == 201, key.text
    return app, {
        "customer": [customer for customer, _ in OWN_FEATURES],
        "key_id": [key.json()["id"]],
    }


# Schemathesis reads the served document when the tests are collected, so the app is made
# then, on its own SQLite file, removed when the test process ends.
_DB = Path(tempfile.mkdtemp(prefix="quotameter-schema-"))
atexit.register(shutil.rmtree, _DB, ignore_errors=True)
APP, REAL = prepare(_DB / "quotameter.sqlite3")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.hook
def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """About half the time, the path names real things: a customer with a feature of its plan,
    so that the answers past the lookups are exercised too, not only the 404s."""
    if not path_parameters:
        return st.just(path_parameters)
    if "feature" in path_parameters:
        real = st.sampled_from(OWN_FEATURES).map(
            lambda pair: {"customer": pair[0], "feature": pair[1]}
        )
    else:
        real = st.fixed_dictionaries(
            {name: st.sampled_from(REAL[name]) for name in path_parameters if name in REAL}
        )
    return st.just(path_parameters) | real.map(lambda drawn: {**path_parameters, **drawn})


@schema.hook
def flatmap_case(_context: Any, case: Any) -> Any:
    """About half the time, a body names a real plan, customer, and feature of the path's
    customer."""
    if not isinstance(case.body, dict) or not {"plan", "customer", "feature"} & case.body.keys():
        return st.just(case)
    own = dict(OWN_FEATURES).get((case.path_parameters or {}).get("customer"))

    def named(plan: str, customer: str) -> Any:
        real = {"plan": plan, "customer": customer, "feature": own}
        case.body = {key: real.get(key) or value for key, value in case.body.items()}
        return case

    return st.just(case) | st.builds(
        named, st.sampled_from(PLANS), st.sampled_from(REAL["customer"])
    )


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_declared_and_none_is_a_server_error(case: Any) -> None:
    if case.path.endswith("/notifications/stream"):
        # An event stream stays open until the client leaves: max_seconds=0 has it send what is
        # waiting and end, so the fuzzer can read the whole answer (its other inputs stay fuzzed).
        case.query = {**(case.query or {}), "max_seconds": 0}
    response = case.call_and_validate(headers=ADMIN, checks=CHECKS)
    if case.method == "PUT" and case.path == "/v1/catalog" and response.status_code == 200:
        apply_demo_catalog(APP)  # a made-up catalog was applied: the real names must stay real


def test_the_document_declares_one_error_shape(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path / "q.sqlite3")) as client:
        doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's {"detail": [...]}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if not status.startswith("4"):
                    continue
                schema_ = answer["content"]["application/json"]["schema"]
                if (method, status) == ("post", "409") and path.endswith("/consume"):
                    # A refused consumption answers its `error` with the balance that refused it;
                    # a reused id or an invoiced `at` answer in the one shape.
                    assert schema_["anyOf"] == [
                        {"$ref": "#/components/schemas/ConsumeRefusedOut"},
                        {"$ref": "#/components/schemas/ErrorBody"},
                    ], (method, path)
                    assert "error" in doc["components"]["schemas"]["ConsumeRefusedOut"]["required"]
                    continue
                assert schema_ == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_a_server_error_is_logged_with_its_trace_and_answered_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # tests/api/test_events.py checks the answer to a failing write; this is a failing read,
    # and the log.
    from quotameter.api import entitlements as api

    def boom(*_args: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api, "_compute_balance", boom)
    app = make_app(tmp_path / "q.sqlite3")
    apply_demo_catalog(app)
    with (
        TestClient(app, headers=ADMIN, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR),
    ):
        r = client.get("/v1/customers/acme/entitlements/media")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the server log has the details"}
    assert "secret" not in r.text and "Traceback" not in r.text
    [record] = [rec for rec in caplog.records if rec.name == "quotameter"]
    assert record.getMessage() == "unhandled error on GET /v1/customers/acme/entitlements/media"
    assert record.exc_info is not None and str(record.exc_info[1]) == "secret internals"
    app.state.services.engine.dispose()
