"""What every router shares: JSON rendering, the clock, the unit of work, instants in queries."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from quotameter.catalog.service import CatalogCache
from quotameter.entitlements.cache import BalanceCache
from quotameter.errors import Invalid, NotFound, shown
from quotameter.jsontext import dumps as dumps
from quotameter.keys.service import KeyCache
from quotameter.store.group import GroupCommit
from quotameter.store.reads import loop_reads
from quotameter.timeutil import clock_from as clock_from
from quotameter.timeutil import instant as instant
from quotameter.timeutil import system_clock as system_clock
from quotameter.usecases.record import IngestResult, Prepared

T = TypeVar("T")


class JSON(JSONResponse):
    """Endpoints return this directly, so Decimals reach the client as exact JSON numbers
    (FastAPI's own encoder would turn them into floats or strings)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ErrorBody(BaseModel):
    """The one shape of every error the API answers (mapped from exceptions in `server.py`)."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(
        description="the field, a colon, and the reason",
        examples=["customer: unknown customer 'nobody'"],
    )
    errors: list[str] = Field(
        default_factory=list, description="every problem, when there are several"
    )


_WHEN = {
    400: "The body is not valid JSON.",
    401: "No key, or an unknown or revoked one.",
    403: "This key's role may not do this.",
    404: "Unknown customer, feature or key.",
    409: "In conflict with what is recorded.",
    413: "The body or the batch is too large.",
    415: "The Content-Type is not one this endpoint reads.",
    422: "A field is missing, of the wrong type or out of range.",
    503: "The database is too busy with other writes (QUOTAMETER_WRITE_WAIT_SECONDS): nothing was "
    "stored; send the same request again after `Retry-After` seconds (ids make a repeat count "
    "once).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the errors an endpoint may answer, all in the one shape."""
    return {status: {"model": ErrorBody, "description": _WHEN[status]} for status in statuses}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """`openapi_extra` declaring the JSON body of an endpoint that reads its body by hand."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with each `$ref` replaced by its definition, so that it can be
    placed anywhere in the OpenAPI document (the models it uses have no cycles)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


class Services:
    """Per-process wiring, on `app.state.services`."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        max_body_bytes: int,
        max_batch: int,
        balance_cache: bool = True,
        key_cache_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.catalogs = CatalogCache()
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        # Batches queued for the write lock go in together: (items, prepared) -> result.
        self.ingests: GroupCommit[tuple[list[Any], Prepared], IngestResult] = GroupCommit()
        self.evaluate_soon = threading.Event()  # wakes this process's scheduler after a batch
        self.inline_reads = engine.dialect.name == "sqlite"
        self.reads = loop_reads(engine)  # one-statement reads on the event loop
        self.balances = BalanceCache() if balance_cache else None
        self.keys = KeyCache(key_cache_seconds)
        self.generated_admin_key: str | None = (
            None  # set once, when this start made the first admin key
        )

    def now(self) -> datetime:
        return self.clock()


async def read(svc: Services, fn: Callable[..., T], *args: Any) -> T:
    """Run a short read. On SQLite it runs on the event loop itself: the queries are local and
    CPU-bound, and handing each to the threadpool made 16 concurrent clients fight over the
    GIL (check p99 845 ms against 94 ms). On PostgreSQL every query waits on the network, so
    the threadpool lets those waits overlap."""
    if svc.inline_reads:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def services(request: HTTPConnection) -> Services:
    services: Services = request.app.state.services  # Starlette's app state is untyped
    return services


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


# Text from a request that is stored: PostgreSQL cannot keep a NUL character.
Text = Annotated[
    str, AfterValidator(_without_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]


async def no_nul_in_path(request: Request) -> None:
    """Nothing is named with a NUL character (PostgreSQL could not even look it up): such a path
    is answered like any other unknown name, the same on every database. Every request passes
    this check: it runs on the event loop (a plain function would cost each request a turn
    on a worker thread, behind the writes)."""
    if "\x00" in request.url.path:
        raise NotFound(f"path: nothing is named with a NUL character ({request.url.path!r})")


# A quantity in a request: positive, and small enough to be kept exactly (NUMERIC(38, 12)).
Quantity = Annotated[Decimal, Field(gt=0, le=10**15, decimal_places=12)]

# An RFC 3339 timestamp in a query or a body, parsed by `instant`.
Instant = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-03-10T12:00:00Z"]}),
]


# In the descriptions of answers: a Decimal, which `JSON` writes as an exact JSON number.
Number = Annotated[Decimal, WithJsonSchema({"type": "number"})]


class PeriodOut(BaseModel):
    start: Instant
    end: Instant


# --- paging ---------------------------------------------------------------------------------


def cursor_text(kind: str, value: int) -> str:
    """An opaque cursor: where a listing of `kind` goes on after (URL-safe base64)."""
    raw = f"{kind}:{value}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_value(kind: str, cursor: str) -> int:
    """The value of a cursor `cursor_text(kind, …)` gave; 422 naming `cursor` for any other."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raw = ""
        prefix, _, value = raw.partition(":")
        if prefix == kind and re.fullmatch(r"-?[0-9]{1,19}", value) and abs(int(value)) < 2**63:
            return int(value)
    raise Invalid(f"cursor: not a cursor this listing gave ({shown(cursor)})")


def cursor_query(what: str) -> Any:
    return Query(
        None,
        max_length=200,
        description=f"the `next_cursor` of the previous page: {what} after it",
    )


def limit_query(default: int | None, description: str) -> Any:
    return Query(default, ge=1, le=1000, description=description)
