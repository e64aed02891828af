"""`/console/customers/{customer}`: one organization, for its admins and for operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from quotameter.api.web import Services, services
from quotameter.console import actions
from quotameter.console.web import Session, render, signed_in, visible
from quotameter.entitlements.service import Balance
from quotameter.usecases import balances

router = APIRouter(include_in_schema=False)


@router.get("/console/customers/{customer}", response_class=HTMLResponse)
async def organization_page(
    request: Request, customer: str, session: Session = Depends(signed_in)
) -> HTMLResponse:
    svc = services(request)
    with svc.engine.connect() as conn:
        known = customer in svc.catalogs.current(conn).spec.customers
    visible(session, customer, known)
    plan, found = await run_in_threadpool(_balances, svc, customer)
    return render(
        request,
        "organization.html",
        {
            "customer": customer,
            "plan": plan,
            "balances": [b.as_dict() for b in found],
            "actions": actions.panel(request, customer, session) if session.admin else {},
        },
        session,
    )


def _balances(svc: Services, customer: str) -> tuple[str, list[Balance]]:
    balances.settle(svc.engine, svc.catalogs, customer, svc.now)
    with svc.engine.connect() as conn:
        return balances.compute_all(conn, svc.catalogs, svc.balances, customer, svc.now())
