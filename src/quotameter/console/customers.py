"""`/console/customers`: every customer with its state, for operators (admin keys).

One overview per page (`usecases.customers.overview`): the state filter, the search, the
sort and the cursors are the list's own; each link carries them on."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse

from quotameter.api.web import services
from quotameter.console.web import PageError, Session, admin, render
from quotameter.context import Context
from quotameter.errors import Invalid
from quotameter.usecases import customers as use_customers

router = APIRouter(include_in_schema=False)

PATH = "/console/customers"
PAGE_SIZE = 50
FILTERS = (
    ("", "All"),
    ("blocked", "Blocked"),
    ("overage", "In overage"),
    ("near_limit", "Near the limit"),
    ("unlimited", "Unlimited"),
)
SORTS = (("name", "Name"), ("percent", "Percentage used"))
# How each state reads, and its class (the badge's colour comes with its word, never alone).
STATES = {
    "blocked": ("Blocked", "blocked"),
    "overage": ("Overage", "overage"),
    "near_limit": ("Near limit", "near"),
    "ok": ("OK", "ok"),
    "unlimited": ("Unlimited", "unlimited"),
}
# The bar's colour by state (SVG presentation attributes: the CSP allows no style attribute).
BAR = {"blocked": "#cf222e", "overage": "#bc4c00", "near_limit": "#9a6700"}
BAR_USED, BAR_TRACK = "#0a58ca", "#d0d7de"


def link(state: str, q: str, sort: str, cursor: str | None = None) -> str:
    """The list's address with these settings (defaults left out)."""
    params = {"state": state, "q": q, "sort": "" if sort == "name" else sort, "cursor": cursor}
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{PATH}?{query}" if query else PATH


@router.get(PATH, response_class=HTMLResponse)
def customers_page(
    request: Request,
    session: Session = Depends(admin),
    state: str = "",
    q: str = "",
    sort: str = "name",
    cursor: str | None = None,
) -> HTMLResponse:
    svc = services(request)
    q = q.strip()
    try:
        with svc.engine.connect() as conn:
            page = use_customers.overview(
                Context(conn, svc.catalogs.current(conn)),
                svc.now(),
                state=state or None,
                q=q or None,
                sort=sort,
                limit=PAGE_SIZE,
                cursor=cursor or None,
            )
    except Invalid as err:
        raise PageError(422, err.message) from None
    previous = None
    if page.has_previous:
        previous = link(state, q, sort, page.previous_cursor)
    return render(
        request,
        "customers.html",
        {
            "rows": [_row(row) for row in page.rows],
            "total": page.total,
            "state": state,
            "q": q,
            "sort": sort,
            "filters": [
                {"label": label, "url": link(value, q, sort), "current": value == state}
                for value, label in FILTERS
            ],
            "sorts": [
                {"label": label, "url": link(state, q, value), "current": value == sort}
                for value, label in SORTS
            ],
            "filter_label": dict(FILTERS).get(state, "All"),
            "clear": link(state, "", sort),
            "next": link(state, q, sort, page.next_cursor) if page.next_cursor else None,
            "previous": previous,
        },
        session,
    )


def _row(row: use_customers.CustomerRow) -> dict[str, Any]:
    label, badge = STATES[row.state]
    width = Decimal(0) if row.percent is None else min(Decimal(100), max(Decimal(0), row.percent))
    return {
        **row.as_dict(),
        "state_label": label,
        "badge": badge,
        "bar_width": format(width, "f"),
        "bar_colour": BAR.get(row.state, BAR_USED),
        "bar_track": BAR_TRACK,
    }
