"""The body limit holds on every route: a Content-Length over it is refused before anything is
read, and a body that grows past it is cut off at that moment, whoever reads it (FastAPI or
the endpoint itself). Straight through the ASGI application, counting what it reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support import ADMIN, ADMIN_KEY, asgi_call

LIMIT = 1000
WRITES = {"post", "put", "patch"}


@pytest.fixture
def small(tmp_path: Path, clock):  # type: ignore[no-untyped-def]
    from quotameter.server import create_app
    from quotameter.settings import Settings

    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'limits.sqlite3'}",
            scheduler=False,
            tune_gc=False,
            admin_key=ADMIN_KEY,
            max_body_bytes=LIMIT,
        ),
        clock=clock,
    )
    yield app
    app.state.services.engine.dispose()


def operations(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every operation the API documents, and of the health check."""
    found = [
        (method, re.sub(r"\{[^}]+\}", "acme", template))
        for template, ops in app.openapi()["paths"].items()
        for method in ops
    ]
    assert len(found) >= 20 and ("get", "/healthz") in found
    return found


def test_a_content_length_over_the_limit_is_refused_at_once_on_every_route(small) -> None:  # type: ignore[no-untyped-def]
    for method, path in operations(small):
        got = asgi_call(
            small, method.upper(), path, {**ADMIN, "Content-Length": str(LIMIT + 1)}, [], more=True
        )
        assert (got.status, got.body, got.reads) == (
            413,
            {"error": f"body: {LIMIT + 1} bytes is over the limit of {LIMIT} bytes"},
            0,
        ), (method, path)
        assert got.headers["connection"] == "close"
        got = asgi_call(
            small, method.upper(), path, {**ADMIN, "Content-Length": str(LIMIT)}, [b" " * LIMIT]
        )
        assert got.status != 413, (method, path, got.body)  # the limit itself is allowed


def test_a_body_is_cut_off_as_soon_as_it_passes_the_limit_on_every_route_that_takes_one(
    small,
) -> None:  # type: ignore[no-untyped-def]
    seen = 0
    for method, path in operations(small):
        if method not in WRITES:
            continue
        # Chunked, so no length is announced: 600 bytes, then 600 more, then more that is
        # never asked for.
        got = asgi_call(
            small,
            method.upper(),
            path,
            {**ADMIN, "Transfer-Encoding": "chunked"},
            [b" " * 600] * 3,
            more=True,
        )
        assert (got.status, got.body, got.reads) == (
            413,
            {"error": f"body: over the limit of {LIMIT} bytes"},
            2,
        ), (method, path)
        assert got.headers["connection"] == "close"  # the rest is never read: the connection ends
        seen += 1
    assert seen >= 8
