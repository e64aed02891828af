"""`/console/customers/{customer}`: one organization, for its admins and for operators.

For each feature of the plan: the bar (allowance, top-ups, usage, limits, as SVG), the
numbers, the state (blocked, in overage and since when; else near the limit or comfortably
under), the forecast, the members' usage, the days, and then the customer's notices and
invoices. Everything is read once per request, off the event loop, after settling an
evaluation the customer owes (an auto-upgrade may be due).

`/console/customers/{customer}/invoices/{number}`: a finalized invoice's printable page, the
same HTML as `GET /v1/customers/{customer}/invoices/{number}.html`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from quotameter.api.web import Services, services
from quotameter.console import actions, charts
from quotameter.console.formatting import day, moment, money, number, percent, quantity
from quotameter.console.web import PageError, Session, render, signed_in, visible
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements import model
from quotameter.entitlements.service import Balance
from quotameter.errors import NotFound
from quotameter.invoices import export
from quotameter.invoices import service as invoices
from quotameter.invoices.service import Invoice
from quotameter.notice_kinds import NoticeKind
from quotameter.notifications import service as notices
from quotameter.timeutil import to_us
from quotameter.usage import service as usage
from quotameter.usage.service import UsageQuery
from quotameter.usecases import balances
from quotameter.wording import plural

router = APIRouter(include_in_schema=False)

MEMBER_ORDERS = ("usage", "name")
NEAR_PERCENT = Decimal(80)  # "near the limit" without a notify level below 100 %
NOTICES_SHOWN = 50  # the newest notices in the history; the API lists them all
NOTICE_PAGE = 500


@dataclass(frozen=True)
class Read:
    """Everything the page shows, read in one go at `now`."""

    now: datetime
    plan: str
    zone: str
    currency: str  # the plan's, which prices top-ups
    balances: list[Balance]
    members: dict[str, usage.Report]  # feature -> the period's usage per member
    days: dict[str, usage.Report]  # feature -> the period's usage per day
    notices: list[dict[str, Any]]  # oldest first
    upcoming: Invoice | None
    past: list[Invoice]


@router.get("/console/customers/{customer}", response_class=HTMLResponse)
async def organization_page(
    request: Request, customer: str, members: str = "usage", session: Session = Depends(signed_in)
) -> HTMLResponse:
    svc = services(request)
    visible(request, session, customer)
    if members not in MEMBER_ORDERS:
        raise PageError(422, f"members: sort by usage or name (got {members[:40]!r})")
    found = await run_in_threadpool(_read, svc, customer)
    zone = found.zone
    return render(
        request,
        "organization.html",
        {
            "customer": customer,
            "plan": found.plan,
            "zone": found.zone,
            "balances": [b.as_dict() for b in found.balances],
            "cards": [_card(found, b, members) for b in found.balances],
            "members_order": members,
            "history": [_history_item(n, zone, found.currency) for n in reversed(found.notices)][
                :NOTICES_SHOWN
            ],
            "notices_total": len(found.notices),
            "upcoming": None if found.upcoming is None else _invoice_view(found.upcoming, zone),
            "past": [_invoice_view(inv, zone) for inv in reversed(found.past)],
            "now": found.now,
            "actions": actions.panel(request, customer, session) if session.admin else {},
        },
        session,
    )


@router.get("/console/customers/{customer}/invoices/{number}", response_class=HTMLResponse)
async def invoice_page(
    request: Request, customer: str, number: str, session: Session = Depends(signed_in)
) -> HTMLResponse:
    """A finalized invoice's printable page (the API's `.html`), on the console's session."""
    svc = services(request)
    visible(request, session, customer)
    invoice = await run_in_threadpool(_invoice, svc, customer, number)
    return HTMLResponse(export.to_html(invoice), headers=INVOICE_HEADERS)


# The printable invoice carries its own <style> and no script.
INVOICE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
        "form-action 'none'; base-uri 'none'"
    ),
}


def _invoice(svc: Services, customer: str, number: str) -> Invoice:
    with svc.engine.connect() as conn:
        try:
            return invoices.by_number(Context(conn, svc.catalogs.current(conn)), customer, number)
        except NotFound:
            raise PageError(404, f"{customer} has no finalized invoice {number[:80]!r}.") from None


# --- reading ----------------------------------------------------------------------------------


def _read(svc: Services, customer: str) -> Read:
    balances.settle(svc.engine, svc.catalogs, customer, svc.now)
    now = svc.now()
    with svc.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # one snapshot: the reports add up to the balances they sit next to
            conn.execution_options(isolation_level="REPEATABLE READ")
        plan, found = balances.compute_all(conn, svc.catalogs, svc.balances, customer, now)
        ctx = Context(conn, svc.catalogs.current(conn))
        view = customers.view(ctx, customer, to_us(now))
        members: dict[str, usage.Report] = {}
        days: dict[str, usage.Report] = {}
        for b in found:
            key = ctx.catalog.spec.meters[b.meter].merge_property
            if key is not None:
                members[b.feature] = usage.report(
                    ctx, customer, UsageQuery(b.feature, group_by=key), now
                )
            days[b.feature] = usage.report(ctx, customer, UsageQuery(b.feature, window="day"), now)
        recorded = _notices(conn, customer)
        upcoming = invoices.upcoming(ctx, customer, now)
        past = invoices.listing(ctx, customer)
    return Read(
        now,
        plan,
        view.spec.timezone,
        view.plan.currency,
        found,
        members,
        days,
        recorded,
        upcoming,
        past,
    )


def _notices(conn: Any, customer: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = notices.listing(conn, customer, after, NOTICE_PAGE)
        out += [notices.as_dict(row) for row in page]
        if len(page) < NOTICE_PAGE:
            return out
        after = page[-1].id


# --- one feature's card -----------------------------------------------------------------------


def _card(found: Read, b: Balance, order: str) -> dict[str, Any]:
    s, zone, unit = b.standing, found.zone, b.unit
    levels = [t.percent_used for t in model.thresholds(b.entitlement.notify)]
    label = _reads(s.usage, s.limit, unit)
    geometry = charts.bar(
        usage=s.usage,
        included=s.included,
        granted=s.granted,
        limit=s.limit,
        hard_limit=s.hard_limit,
        level=s.level,
        thresholds=levels,
    )
    state, state_class, since = _state(found, b, levels)
    ahead = b.forecast
    if ahead.exhausted:
        forecast = "already used up"
    elif ahead.runs_out_at is not None:
        forecast = f"runs out around {day(ahead.runs_out_at, zone)}"
    elif s.limit is None:
        forecast = "no limit"
    else:
        forecast = "not this period"
    return {
        "feature": b.feature,
        "unit": unit,
        "units": plural(unit).capitalize(),
        "reads": label,
        "bar": charts.bar_svg(geometry, label),
        "legend": _legend(b, levels),
        "remaining": quantity(s.remaining, unit),
        "used_percent": percent(model.percent_used(s)),
        "period": f"{day(b.period.start, zone)} – {day(b.period.end - ONE_US, zone)}",
        "resets": moment(b.period.end, zone),
        "state": state,
        "state_class": state_class,
        "has_access": s.has_access,
        "since": since,
        "forecast": forecast,
        "forecast_at": ahead.runs_out_at,
        "members": _members(found.members.get(b.feature), b, order),
        "days": _days(found.days[b.feature], b, zone),
        "level": None if s.level is None else quantity(s.level, unit),
        "hard_limit": None if s.hard_limit is None else quantity(s.hard_limit, unit),
    }


ONE_US = timedelta(microseconds=1)


def _reads(used: Decimal, limit: Decimal | None, unit: str) -> str:
    """ "4,526 of 5,000 minutes"; without a limit "4,526 minutes, no limit"."""
    if limit is None:
        return f"{quantity(used, unit)}, no limit"
    return f"{number(used)} of {quantity(limit, unit)}"


def _legend(b: Balance, levels: list[Decimal]) -> list[dict[str, str]]:
    s, unit = b.standing, b.unit
    out = [{"kind": "used", "text": f"used {quantity(s.usage, unit)}"}]
    if s.level is not None:
        out.append({"kind": "level", "text": f"level now {quantity(s.level, unit)}"})
    if s.limit is None:
        return out
    out.append({"kind": "included", "text": f"included {quantity(s.included, unit)}"})
    if s.granted > 0:
        out.append({"kind": "granted", "text": f"top-ups and credits {quantity(s.granted, unit)}"})
    if s.hard_limit is not None and s.hard_limit > s.limit:
        out.append({"kind": "maximum", "text": f"maximum {quantity(s.hard_limit, unit)}"})
    if s.hard_limit is None or s.hard_limit > s.limit:
        out.append({"kind": "overage", "text": "overage zone"})
    if s.hard_limit is not None:
        out.append({"kind": "hard-limit", "text": f"blocked at {quantity(s.hard_limit, unit)}"})
    if levels:
        marks = ", ".join(f"{number(p)} %" for p in sorted(set(levels)) if p < 100)
        if marks:
            out.append({"kind": "threshold", "text": f"notices at {marks}"})
    return out


def _state(found: Read, b: Balance, levels: list[Decimal]) -> tuple[str, str, str | None]:
    """(what, css class, since when) — blocked or in overage and since when, from the
    customer's notices of this period; else near the limit or comfortably under."""
    s, zone = b.standing, found.zone
    start_us = to_us(b.period.start)
    mine = [
        n
        for n in found.notices
        if n["feature"] == b.feature
        and n["period"] is not None
        and to_us(n["period"]["start"]) == start_us
    ]
    if not s.has_access:
        blocked = None
        for n in mine:
            if n["type"] == NoticeKind.ACCESS_BLOCKED:
                blocked = n
            elif n["type"] == NoticeKind.ACCESS_RESTORED:
                blocked = None
        since = f"since {moment(blocked['at'], zone)}" if blocked else "this period"
        return "Blocked", "blocked", since
    if s.limit is not None and s.overage > 0:
        exhausted = [n for n in mine if n["type"] == NoticeKind.USAGE_EXHAUSTED]
        since = f"since {moment(exhausted[-1]['at'], zone)}" if exhausted else "this period"
        return "In overage", "overage", since
    if s.limit is None:
        return "No limit", "ok", None
    near = min((p for p in levels if p < 100), default=NEAR_PERCENT)
    if s.usage * 100 >= near * s.limit:
        return "Near the limit", "near", None
    return "Comfortably under the limit", "ok", None


def _members(report: usage.Report | None, b: Balance, order: str) -> dict[str, Any] | None:
    if report is None:
        return None
    rows = [(r.group or "(none)", r.usage) for r in report.rows]
    if order == "name":
        rows.sort(key=lambda r: (r[0].casefold(), r[0]))
    else:
        rows.sort(key=lambda r: (-r[1], r[0].casefold()))
    return {
        "group_by": report.group_by,
        "rows": [
            {"name": name, "usage": quantity(used, b.unit), "value": used} for name, used in rows
        ],
        "total": quantity(report.total, b.unit),
        "total_value": report.total,
    }


def _days(report: usage.Report, b: Balance, zone: str) -> dict[str, Any]:
    rows = [
        {"day": day(r.start, zone), "usage": quantity(r.usage, b.unit), "value": r.usage}
        for r in report.rows
    ]
    titles = [f"{r['day']}: {r['usage']}" for r in rows]
    what = "highest level" if b.standing.level is not None else "usage"
    label = f"{b.feature}: {what} by day, {day(b.period.start, zone)} to {day(report.end, zone)}"
    highest = max((r.usage for r in report.rows), default=None)
    return {
        "rows": rows,
        "first": rows[0]["day"] if rows else None,
        "last": rows[-1]["day"] if rows else None,
        "highest": None if highest is None else quantity(highest, b.unit),
        "chart": charts.columns_svg(charts.columns([r.usage for r in report.rows], titles), label),
        "label": label,
    }


# --- the history ------------------------------------------------------------------------------


def _history_item(n: dict[str, Any], zone: str, currency: str) -> dict[str, str]:
    return {"when": moment(n["at"], zone), "kind": str(n["type"]), "text": describe(n, currency)}


def describe(n: dict[str, Any], currency: str = "USD") -> str:
    """A notice in words, as the timeline shows it (a top-up's price in `currency`)."""
    kind, feature, d = n["type"], n["feature"] or "", n["details"]
    unit = d.get("unit")
    if kind == NoticeKind.USAGE_THRESHOLD:
        return (
            f"{feature}: {percent(n['percent'])} of the allowance used "
            f"({_of(d.get('usage'), d.get('limit'), unit)})"
        )
    if kind == NoticeKind.USAGE_EXHAUSTED:
        return f"{feature}: the allowance is used up ({_of(d.get('usage'), d.get('limit'), unit)})"
    if kind == NoticeKind.ACCESS_BLOCKED:
        hard = d.get("hard_limit") or d.get("limit")
        return f"{feature}: blocked at the limit of {quantity(hard, unit)}"
    if kind == NoticeKind.ACCESS_RESTORED:
        return f"{feature}: available again"
    if kind == NoticeKind.TOPUP_APPLIED:
        blocks = d.get("blocks")
        what = f"{blocks} top-up block{'s' if blocks != 1 else ''}" if blocks else "a top-up"
        price = money(d.get("price"), currency)
        return f"{feature}: {what} bought, {number(d.get('amount'))} more, for {price}"
    if kind == NoticeKind.PLAN_UPGRADING:
        return f"{feature} used up: upgrading from {d.get('from_plan')} to {d.get('to_plan')}"
    if kind == NoticeKind.PLAN_UPGRADED:
        return f"upgraded to {d.get('to_plan')} (was {d.get('from_plan')})"
    return f"{feature}: {kind}"


def _of(used: object, limit: object, unit: object) -> str:
    text_unit = unit if isinstance(unit, str) else None
    if limit is None:
        return quantity(str(used), text_unit) if used is not None else ""
    return f"{number(str(used))} of {quantity(str(limit), text_unit)}"


# --- invoices ---------------------------------------------------------------------------------


def _invoice_view(inv: Invoice, zone: str) -> dict[str, Any]:
    return {
        "number": inv.number,
        "period": f"{day(inv.period.start, zone)} – {day(inv.period.end - ONE_US, zone)}",
        "lines": [
            {
                "description": line.description,
                "quantity": number(line.quantity),
                "amount": money(line.amount, inv.currency),
            }
            for line in inv.lines
        ],
        "total": money(inv.total, inv.currency),
    }
