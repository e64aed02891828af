"""The application: routers, error mapping, storage wiring."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotameter import __version__
from quotameter.api.auth import KeyFirst
from quotameter.api.catalog import router as catalog_router
from quotameter.api.customers import router as customers_router
from quotameter.api.entitlements import CheckFromCache
from quotameter.api.entitlements import router as entitlements_router
from quotameter.api.events import router as events_router
from quotameter.api.events import with_event_schema
from quotameter.api.grants import router as grants_router
from quotameter.api.guard import RequestGuard
from quotameter.api.inapp import router as inapp_router
from quotameter.api.invoices import router as invoices_router
from quotameter.api.keys import router as keys_router
from quotameter.api.notifications import router as notifications_router
from quotameter.api.usage import router as usage_router
from quotameter.api.web import (
    JSON,
    ErrorBody,
    Services,
    error_responses,
    no_nul_in_path,
    system_clock,
)
from quotameter.console.pages import install as install_console
from quotameter.delivery.worker import start_delivery
from quotameter.errors import Overloaded, QuotameterError
from quotameter.invoices.finalizer import Finalizer
from quotameter.keys import service as keys
from quotameter.notifications.scheduler import Scheduler
from quotameter.settings import Settings
from quotameter.store.checkpoint import Checkpointer
from quotameter.store.engine import bounded_writes, busy, make_engine, retry_after, unit_of_work
from quotameter.store.migrate import upgrade
from quotameter.timeutil import to_us
from quotameter.worker import Worker

log = logging.getLogger("quotameter")


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = system_clock
) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    services = Services(
        engine,
        clock,
        settings.max_body_bytes,
        settings.max_batch,
        settings.balance_cache,
        settings.key_cache_seconds,
    )
    with unit_of_work(engine) as conn:
        admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        services.generated_admin_key = keys.bootstrap(conn, admin_key, to_us(clock()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers: list[Worker] = []
        if settings.scheduler:
            grace = timedelta(seconds=settings.invoice_grace_seconds)
            workers.append(Scheduler(engine, services.catalogs, clock, services.evaluate_soon))
            workers.append(Finalizer(engine, services.catalogs, clock, grace))
        for worker in workers:
            worker.start()
        delivery = start_delivery(settings, engine, services.catalogs, clock)
        checkpointer = Checkpointer(engine) if engine.dialect.name == "sqlite" else None
        if checkpointer is not None:
            checkpointer.start()
        if settings.tune_gc:
            tune_gc()
        await services.reads.open()
        try:
            yield
        finally:
            await services.reads.close()
            for worker in workers:
                worker.stop()
            if delivery is not None:
                delivery.stop()
            if checkpointer is not None:
                checkpointer.stop()

    app = FastAPI(
        title="quotameter",
        version=__version__,
        default_response_class=JSON,
        lifespan=lifespan,
        dependencies=[Depends(no_nul_in_path)],
    )
    app.state.services = services
    app.state.settings = settings  # read by endpoints with settings of their own (inapp)
    for router in (
        catalog_router,
        events_router,
        entitlements_router,
        customers_router,
        grants_router,
        notifications_router,
        inapp_router,
        usage_router,
        keys_router,
        invoices_router,
    ):
        # Every one needs a key, and any may find the database too busy (a write, or a read that
        # first settles a customer's pending evaluation).
        app.include_router(router, responses=error_responses(401, 403, 503))
    # why: FastAPI documents replacing app.openapi as the way to extend the document.
    app.openapi = with_event_schema(one_error_shape(app.openapi))  # type: ignore[method-assign]

    install_console(app, settings)

    # On the event loop: a liveness probe answers while every worker thread is busy writing.
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(QuotameterError)
    async def _domain(_: Request, err: QuotameterError) -> JSON:
        body: dict[str, object] = {"error": err.message}
        if err.errors:
            body["errors"] = err.errors
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        if isinstance(err, Overloaded):
            headers = {"Retry-After": str(err.retry_after)}
        return JSON(body, status_code=err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, err: RequestValidationError) -> JSON:
        first = err.errors()[0]
        if (
            first["type"] == "json_invalid"
        ):  # the same answer as the endpoints that parse their body
            return JSON(
                {"error": f"body: not valid JSON ({first.get('ctx', {}).get('error')})"},
                status_code=400,
            )
        field = ".".join(str(p) for p in first["loc"][1:]) or str(first["loc"][0])
        return JSON({"error": f"{field}: {first['msg']}"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSON:
        message = str(err.detail)
        if (
            err.status_code == 400 and message == "There was an error parsing the body"
        ):  # e.g. not UTF-8
            message = (
                f"body: not valid JSON ({err.__cause__})"
                if err.__cause__
                else "body: not valid JSON"
            )
        elif err.status_code == 404 and message == "Not Found":
            message = f"path: no endpoint at {request.url.path}"
        elif err.status_code == 405:
            message = f"method: {request.method} is not allowed on {request.url.path}"
        return JSON({"error": message}, status_code=err.status_code, headers=err.headers)

    # Each added around the previous: BoundedWrites (how long a request's writes may wait) around
    # CatchAll (a JSON 503 for a busy database, a JSON 500 for any other error) around KeyFirst
    # (401 before anything of the body is read) around RequestGuard (the body's size and pauses)
    # around CheckFromCache (a check with a cached balance, answered without the router).
    app.add_middleware(CheckFromCache)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(KeyFirst)
    app.add_middleware(CatchAll, write_wait=settings.write_wait_seconds)
    app.add_middleware(BoundedWrites, seconds=settings.write_wait_seconds)
    return app


def app_from_environment() -> FastAPI:
    """The app of one worker process started by `quotameter serve --workers N`."""
    return create_app(Settings())


def one_error_shape(make_document: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The served document with FastAPI's own 422 schema (`{"detail": [...]}`) replaced by
    `ErrorBody`: the handler above answers every request validation error in that shape."""

    def document() -> dict[str, Any]:
        doc = make_document()  # FastAPI builds it once and keeps it; this rewrite is idempotent
        schemas = doc.get("components", {}).get("schemas", {})
        if schemas.pop("HTTPValidationError", None) is None:
            return doc
        schemas.pop("ValidationError", None)
        schemas.setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for operations in doc["paths"].values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer is not None:
                    answer["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    }
                    answer["description"] = "A field is missing, of the wrong type or out of range."
        return doc

    return document


def tune_gc() -> None:
    """Keep the cycle collector off the hot path of a started server.

    Everything alive once the app is up (modules, routes, the catalog) is moved out of the
    collector's reach, and young collections run every 50,000 allocations instead of 700:
    an ingest batch allocates about ten containers per event and drops them all a moment
    later, and with the defaults, scans of long-lived objects took about half of the CPU time
    of checking a batch (measured in `bench/ingest.py`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class BoundedWrites:
    """A request's write units wait at most `seconds` for the write lock, then it is answered
    503 with Retry-After (`store.engine.write_wait`): under a write load the database cannot
    keep up with, clients are told to come back at once instead of piling up for 30 s."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan's work (starting the workers) stays patient
            await self.app(scope, receive, send)
            return
        with bounded_writes(self.seconds):
            await self.app(scope, receive, send)


class CatchAll:
    """Answer an unexpected error with a JSON 500; the trace goes to the log, never to the client.
    An error of a database too busy to do the work (`store.engine.busy`: nothing of it was kept)
    is no bug: it is answered 503 with Retry-After, like `Overloaded`.

    Starlette's own handler for Exception re-raises after answering, which makes uvicorn log
    the error twice and drop the keep-alive connection; this middleware sits inside it.
    """

    def __init__(self, app: ASGIApp, write_wait: float) -> None:
        self.app = app
        self.write_wait = write_wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:
            if not started and (isinstance(err, Overloaded) or busy(err)):
                await self._busy(scope, err)(scope, receive, send)
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSON(
                {"error": "internal error; the server log has the details"}, status_code=500
            )
            await response(scope, receive, send)

    def _busy(self, scope: Scope, err: Exception) -> JSON:
        log.warning("answered 503 to %s %s: %s", scope.get("method"), scope.get("path"), err)
        if not isinstance(err, Overloaded):
            seconds = retry_after(self.write_wait)
            err = Overloaded(
                "database: too busy with other work; nothing was stored, send it again in "
                f"{seconds} s",
                retry_after=seconds,
            )
        return JSON(
            {"error": err.message}, status_code=503, headers={"Retry-After": str(err.retry_after)}
        )
