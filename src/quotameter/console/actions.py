"""Admin actions on one organization: top-up, plan, seats, credit (each confirmed first).

Every action is a plain form on the organization page (templates/actions.html) that carries
the session's CSRF token and a fresh idempotency id. It posts to
`/console/customers/{customer}/actions/{kind}`, which answers a review page: what will
happen, its price or its effect on this period's invoice, and "Confirm" and "Cancel".
Confirming posts the same fields with `confirm=1`; the action then runs through the use
cases the API runs (`usecases.grants.add`, `usecases.customers.change_plan` / `change`) and
the browser goes back to the organization page with `?done=…`, which the page shows as a
short status message (a fixed text per outcome: the URL cannot put words on the page).

A replayed confirmation does not act twice: a top-up or a credit is recorded under the
form's id once (the API's idempotency), and a plan or seat count equal to the current one
changes nothing, which the page says. A wrong field (an unknown plan, a bad amount) comes
back on the review page, named, with the form to correct it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from quotameter.api.customers import MAX_SEATS
from quotameter.api.web import Services, services
from quotameter.console.formatting import number
from quotameter.console.web import PageError, Session, admin, check_csrf, redirect, render, visible
from quotameter.context import Context
from quotameter.errors import QuotameterError
from quotameter.grants.service import GrantRequest
from quotameter.store.engine import unit_of_work
from quotameter.timeutil import to_us
from quotameter.usecases import customers as use_customers
from quotameter.usecases import grants as use_grants
from quotameter.usecases import preview
from quotameter.usecases.preview import Offer

router = APIRouter(include_in_schema=False)

TITLES = {
    "topup": "Buy a top-up",
    "plan": "Change plan",
    "seats": "Change seats",
    "credit": "Grant a credit",
}
BUTTONS = {
    "topup": "Review top-up",
    "plan": "Review plan change",
    "seats": "Review seat change",
    "credit": "Review credit",
}
FIELDS = {
    "topup": ("feature", "blocks"),
    "plan": ("plan",),
    "seats": ("seats",),
    "credit": ("feature", "amount"),
}
LABELS = {
    "feature": "Feature",
    "blocks": "Blocks",
    "plan": "Plan",
    "seats": "Seats",
    "amount": "Amount",
    "id": "Form",
}
MAX_BLOCKS = 1_000_000
MAX_AMOUNT = Decimal(10) ** 15
MAX_ID = 200

# What the organization page says after an action (`?done=`): fixed texts, filled in from
# the customer's current state only.
DONE = {
    "topup": "Top-up of {feature} bought: it counts at once.",
    "topup-again": "That top-up was bought already: it was not bought again.",
    "credit": "Credit of {feature} granted: it counts at once.",
    "credit-again": "That credit was granted already: it was not granted again.",
    "plan": "Plan changed: {customer} is on plan {plan} from now.",
    "plan-same": "{customer} is on plan {plan} already: nothing changed.",
    "seats": "Seats changed: {customer} pays for {seats} seats from now.",
    "seats-same": "{customer} pays for {seats} seats already: nothing changed.",
}


@dataclass
class Asked:
    """One action as posted: its fields as typed, and what was wrong with them."""

    kind: str
    values: dict[str, str]
    id: str
    problems: dict[str, str] = field(default_factory=dict)
    blocks: int = 0
    seats: int = 0
    amount: Decimal = Decimal(0)

    def problem(self, name: str, reason: str) -> None:
        self.problems.setdefault(name, reason)


def panel(request: Request, customer: str, session: Session) -> dict[str, Any]:
    """What templates/actions.html needs to draw the action forms (admins only)."""
    svc = services(request)
    found = _offer(svc, customer)
    return {
        "customer": customer,
        "offer": found,
        "titles": TITLES,
        "buttons": BUTTONS,
        "ids": {kind: _fresh_id() for kind in TITLES},
        "done": _done(request.query_params.get("done"), request.query_params.get("feature"), found),
    }


@router.post("/console/customers/{customer}/actions/{kind}")
async def act(
    request: Request, customer: str, kind: str, session: Session = Depends(admin)
) -> Response:
    """Without `confirm=1`: the review page. With it: the action, then back to the page."""
    form = await request.form()
    check_csrf(form, session.csrf)
    svc = services(request)
    visible(request, session, customer)
    if kind not in TITLES:
        raise PageError(404, f"No action {kind!r} here: {', '.join(TITLES)}.")
    asked = _asked(kind, form)
    confirmed = form.get("confirm") == "1"
    return await run_in_threadpool(_answer, request, svc, session, customer, asked, confirmed)


@router.get("/console/customers/{customer}/actions/{kind}", dependencies=[Depends(admin)])
def act_again(customer: str, kind: str) -> Response:
    """A review page's address opened again (a bookmark, a reload as GET): back to the page,
    where the forms are; an action is only ever posted."""
    return redirect(f"/console/customers/{quote(customer, safe='')}")


def _answer(
    request: Request,
    svc: Services,
    session: Session,
    customer: str,
    asked: Asked,
    confirmed: bool,
) -> Response:
    found = _offer(svc, customer)
    _check(asked, found)
    review: dict[str, Any] = {}
    status = 200
    if asked.problems:
        status = 422
    else:
        try:
            if confirmed:
                return _run(svc, customer, asked)
            review = _review(svc, customer, asked, found)
        except QuotameterError as err:
            _name_problem(asked, err.message)
            status = err.status if 400 <= err.status < 600 else 422
    return render(
        request,
        "action_review.html",
        {
            "customer": customer,
            "kind": asked.kind,
            "title": TITLES[asked.kind],
            "asked": asked,
            "offer": found,
            "review": review,
            "labels": LABELS,
            "fields": FIELDS[asked.kind],
        },
        session,
        status=status,
    )


def _fresh_id() -> str:
    return str(uuid.uuid4())


def _offer(svc: Services, customer: str) -> Offer:
    with svc.engine.connect() as conn:
        return preview.offer(Context(conn, svc.catalogs.current(conn)), customer, svc.now())


def _asked(kind: str, form: FormData) -> Asked:
    values = {}
    for name in FIELDS[kind]:
        value = form.get(name)
        values[name] = value.strip() if isinstance(value, str) else ""
    sent_id = form.get("id")
    return Asked(kind, values, sent_id.strip() if isinstance(sent_id, str) else "")


def _check(asked: Asked, found: Offer) -> None:
    """Name each field that is missing or wrong, as the API would."""
    v = asked.values
    if not asked.id or len(asked.id) > MAX_ID:
        asked.problem("id", "missing or too long: open the form again from the page")
    if asked.kind == "topup":
        if found.topup(v["feature"]) is None:
            sold = ", ".join(t.feature for t in found.topups) or "none"
            asked.problem(
                "feature",
                f"plan {found.plan} sells no top-ups of {v['feature'] or 'nothing'} "
                f"(it sells: {sold})",
            )
        blocks = _whole(v["blocks"])
        if blocks is None or not 1 <= blocks <= MAX_BLOCKS:
            asked.problem("blocks", f"must be a whole number from 1 to {number(MAX_BLOCKS)}")
        else:
            asked.blocks = blocks
    elif asked.kind == "credit":
        if found.credit(v["feature"]) is None:
            limited = ", ".join(c.feature for c in found.limited) or "none"
            asked.problem(
                "feature",
                f"{v['feature'] or 'nothing'} has no allowance on plan {found.plan} to add to "
                f"(features with one: {limited})",
            )
        amount = _decimal(v["amount"])
        if amount is None or not 0 < amount <= MAX_AMOUNT:
            asked.problem("amount", "must be a number greater than 0")
        elif _places(amount) > 12:
            asked.problem("amount", "must have at most 12 decimal places")
        else:
            asked.amount = amount
    elif asked.kind == "plan":
        if v["plan"] not in found.plans:
            asked.problem(
                "plan", f"unknown plan {v['plan'] or 'none'} (known: {', '.join(found.plans)})"
            )
    elif asked.kind == "seats":
        seats = _whole(v["seats"])
        if seats is None or not 0 <= seats <= MAX_SEATS:
            asked.problem("seats", f"must be a whole number from 0 to {number(MAX_SEATS)}")
        else:
            asked.seats = seats


def _whole(text: str) -> int | None:
    cleaned = text.replace(",", "").replace("_", "")
    return int(cleaned) if cleaned.isdigit() and len(cleaned) <= 12 else None


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _name_problem(asked: Asked, message: str) -> None:
    """A domain error says `field: reason`: put it on that field when the form has it."""
    head, sep, rest = message.partition(": ")
    if sep and (head in asked.values or head == "id"):
        asked.problem(head, rest)
    else:
        asked.problem("", message)


def _review(svc: Services, customer: str, asked: Asked, found: Offer) -> dict[str, Any]:
    """What confirming would do, and what it costs this period."""
    v = asked.values
    now = svc.now()
    if asked.kind == "topup":
        offer = found.topup(v["feature"])
        assert offer is not None  # checked
        return {
            "offer": offer,
            "amount": offer.block_size * asked.blocks,
            "price": offer.price * asked.blocks,
        }
    if asked.kind == "credit":
        return {"limited": found.credit(v["feature"])}
    if asked.kind == "plan":
        if v["plan"] == found.plan:
            return {"same": True}
        return {
            "difference": preview.plan_change(svc.engine, svc.catalogs, customer, v["plan"], now)
        }
    if asked.seats == found.seats:
        return {"same": True}
    return {
        "difference": preview.seats_change(svc.engine, svc.catalogs, customer, asked.seats, now)
    }


def _run(svc: Services, customer: str, asked: Asked) -> Response:
    """Do it, through the API's use cases, and go back to the page saying what was done."""
    now = svc.now()
    v = asked.values
    extra: dict[str, str] = {}
    with unit_of_work(svc.engine) as conn:
        ctx = Context(conn, svc.catalogs.current(conn))
        if asked.kind in {"topup", "credit"}:
            req = GrantRequest(
                customer,
                asked.id,
                v["feature"],
                asked.kind,
                amount=asked.amount if asked.kind == "credit" else None,
                blocks=asked.blocks if asked.kind == "topup" else None,
            )
            _, created = use_grants.add(ctx, req, now, to_us(now))
            if created:
                use_customers.after_change(ctx, customer, now, now)
            done = asked.kind if created else f"{asked.kind}-again"
            extra["feature"] = v["feature"]
        else:
            current = preview.offer(ctx, customer, now)  # read again, under the write lock
            if asked.kind == "plan":
                if v["plan"] == current.plan:
                    done = "plan-same"
                else:
                    use_customers.change_plan(ctx, customer, v["plan"], now, now)
                    done = "plan"
            elif asked.seats == current.seats:
                done = "seats-same"
            else:
                use_customers.change(
                    ctx, customer, seats=asked.seats, settings={}, effective=now, now=now
                )
                done = "seats"
    query = urlencode({"done": done, **extra})
    return redirect(f"/console/customers/{quote(customer, safe='')}?{query}")


def _done(code: str | None, feature: str | None, found: Offer) -> str | None:
    """The status message of `?done=`: a fixed text, or none for a code it does not know."""
    text = DONE.get(code or "")
    if text is None:
        return None
    known = {c.feature for c in found.limited}
    return text.format(
        customer=found.customer,
        plan=found.plan,
        seats=number(found.seats),
        feature=feature if feature in known else "the feature",
    )
