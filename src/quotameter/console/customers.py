"""`/console/customers`: every customer, for operators (admin keys)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse

from quotameter.api.web import services
from quotameter.console.web import Session, admin, render

router = APIRouter(include_in_schema=False)


@router.get("/console/customers", response_class=HTMLResponse)
def customers_page(request: Request, session: Session = Depends(admin)) -> HTMLResponse:
    svc = services(request)
    with svc.engine.connect() as conn:
        catalog = svc.catalogs.current(conn)
    rows = [{"key": key, "plan": spec.plan} for key, spec in sorted(catalog.spec.customers.items())]
    return render(request, "customers.html", {"rows": rows}, session)
