from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from quotameter.api.auth import reads_customer
from quotameter.api.web import (
    JSON,
    Instant,
    Number,
    PeriodOut,
    Services,
    cursor_query,
    cursor_text,
    cursor_value,
    error_responses,
    instant,
    limit_query,
    services,
)
from quotameter.context import Context
from quotameter.errors import Invalid, shown
from quotameter.invoices import export, service
from quotameter.invoices.service import Invoice
from quotameter.notifications.scheduler import settle_before_read
from quotameter.timeutil import to_us

router = APIRouter(tags=["invoices"])

Format = Literal["json", "csv", "html"]
_FORMAT = Query(
    None,
    description="json (default), csv, or html (a printable page); "
    "also chosen by `Accept: text/csv` or `text/html`",
)


class LineOut(BaseModel):
    kind: str = Field(
        description="flat, per_seat, unit, overage, graduated, volume, package, topup, "
        "proration or minimum"
    )
    description: str
    plan: str
    feature: str | None
    quantity: Number
    unit_price: str | None = Field(description="in the invoice's currency")
    amount: str = Field(
        description="rounded half-up to the currency's minor unit", examples=["0.29"]
    )


class InvoiceOut(BaseModel):
    id: int | None = Field(description="null while the invoice is running")
    number: str
    customer: str
    status: str = Field(description="upcoming (running) or finalized")
    period: PeriodOut
    plan: str
    currency: str
    lines: list[LineOut]
    total: str = Field(description="the sum of the lines", examples=["766.67"])
    at: Instant = Field(
        description="upcoming: the instant it runs to; finalized: when it was finalized"
    )
    hypothetical: bool = Field(
        default=False, description="priced on another plan than the customer's (`?plan=`)"
    )


class InvoicesOut(BaseModel):
    invoices: list[InvoiceOut]
    next_cursor: str | None = Field(
        default=None,
        description="with `limit` or `cursor`: the `cursor` of the next page, null on the last "
        "(absent when the whole list was asked for)",
    )


# --- paging ---------------------------------------------------------------------------------

_INVOICES = "invoices"  # the kind of the invoices' cursors: the period start of the last


def _answers(model: type[BaseModel], html: bool = True) -> dict[int | str, dict[str, Any]]:
    content: dict[str, Any] = {"text/csv": {"schema": {"type": "string"}}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    return {200: {"model": model, "content": content}, **error_responses(404, 422)}


@router.get(
    "/v1/customers/{customer}/invoices/upcoming",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses=_answers(InvoiceOut),
)
async def upcoming_invoice(
    request: Request,
    customer: str,
    at: Instant | None = None,
    format: Format | None = _FORMAT,
    plan: str | None = Query(
        None,
        description="what if: price the period so far on this plan instead, with the same "
        "events, seats and grants (the answer says `hypothetical: true`)",
    ),
) -> Any:
    """The running invoice of the billing period containing `at` (default now), priced up to
    `at`."""
    svc = services(request)
    when = instant(at, "at", svc.now())
    invoice = await run_in_threadpool(_upcoming, svc, customer, when, plan or None)
    return _render(request, [invoice], format, single=True)


def _upcoming(svc: Services, customer: str, when: Any, plan: str | None = None) -> Invoice:
    settle_before_read(
        svc.engine, svc.catalogs, customer, svc.now
    )  # an auto-upgrade owed changes the plan
    with svc.engine.connect() as conn:
        ctx = Context(conn, svc.catalogs.current(conn))
        if plan is not None:
            return service.what_if(ctx, customer, plan, when)
        return service.upcoming(ctx, customer, when)


@router.get(
    "/v1/customers/{customer}/invoices",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses=_answers(InvoicesOut, html=False),
)
def list_invoices(
    request: Request,
    customer: str,
    format: Literal["json", "csv"] | None = _FORMAT,
    limit: int | None = limit_query(None, "at most this many invoices (default: all)"),
    cursor: str | None = cursor_query("the invoices"),
) -> Any:
    """The finalized invoices, oldest first (CSV: every line of every invoice). With `limit`
    or `cursor`, one page: `next_cursor` goes on (CSV: the `Next-Cursor` header)."""
    svc = services(request)
    after = None if cursor is None else cursor_value(_INVOICES, cursor)
    with svc.engine.connect() as conn:
        ctx = Context(conn, svc.catalogs.current(conn))
        found = service.listing(ctx, customer, after, None if limit is None else limit + 1)
    paged = limit is not None or cursor is not None
    next_cursor = None
    if limit is not None and len(found) > limit:
        found = found[:limit]
        next_cursor = cursor_text(_INVOICES, to_us(found[-1].period.start))
    if _format(request, format) == "csv":
        answer = _csv(found)
        if next_cursor is not None:
            answer.headers["Next-Cursor"] = next_cursor
        return answer
    body: dict[str, Any] = {"invoices": [inv.as_dict() for inv in found]}
    if paged:
        body["next_cursor"] = next_cursor
    return JSON(body)


_INVOICE = Path(
    description="the invoice's id (all digits) or its number (`{customer}-{YYYYMMDD}`)",
    examples=["kestrel-20261201"],
)
_MAX_ID = 2**63 - 1


# Response (no media type of its own), so that the errors are declared as JSON like everywhere else.
@router.get(
    "/v1/customers/{customer}/invoices/{invoice}.html",
    response_class=Response,
    dependencies=[Depends(reads_customer)],
    responses={
        200: {
            "description": "A printable page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 422),
    },
)
def invoice_page(request: Request, customer: str, invoice: str = _INVOICE) -> Any:
    """A finalized invoice, by id or number, as a printable HTML page."""
    return HTMLResponse(export.to_html(_get(request, customer, invoice)))


@router.get(
    "/v1/customers/{customer}/invoices/{invoice}",
    response_class=JSON,
    dependencies=[Depends(reads_customer)],
    responses=_answers(InvoiceOut),
)
def get_invoice(
    request: Request, customer: str, invoice: str = _INVOICE, format: Format | None = _FORMAT
) -> Any:
    """One finalized invoice, by id or number."""
    return _render(request, [_get(request, customer, invoice)], format, single=True)


def _get(request: Request, customer: str, invoice: str) -> Invoice:
    """An all-digits `invoice` is an id; anything else is a number."""
    invoice_id = None
    if invoice.isascii() and invoice.isdigit():
        invoice_id = int(invoice)
        if not 1 <= invoice_id <= _MAX_ID:
            raise Invalid(f"invoice: an id is from 1 to {_MAX_ID} (got {shown(invoice)})")
    svc = services(request)
    with svc.engine.connect() as conn:
        ctx = Context(conn, svc.catalogs.current(conn))
        if invoice_id is not None:
            return service.get(ctx, customer, invoice_id)
        return service.by_number(ctx, customer, invoice)


def _format(request: Request, asked: str | None) -> str:
    if asked:
        return asked
    accept = request.headers.get("accept", "")
    if "text/csv" in accept:
        return "csv"
    if accept.startswith("text/html"):
        return "html"
    return "json"


def _csv(found: list[Invoice]) -> Response:
    return Response(export.to_csv(found), media_type="text/csv; charset=utf-8")


def _render(request: Request, found: list[Invoice], asked: str | None, *, single: bool) -> Response:
    chosen = _format(request, asked)
    if chosen == "csv":
        return _csv(found)
    if chosen == "html" and single:
        return HTMLResponse(export.to_html(found[0]))
    return JSON(found[0].as_dict() if single else {"invoices": [inv.as_dict() for inv in found]})
