"""Signing in and out, the error pages, and `install`, which adds the console to the app."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from quotameter.api.web import services
from quotameter.console import actions, customers, live, organization
from quotameter.console.web import (
    COOKIE,
    PRE_COOKIE,
    PageError,
    Session,
    Sessions,
    SignInNeeded,
    check_csrf,
    current,
    landing,
    redirect,
    render,
    sessions,
    signed_in,
)
from quotameter.keys import service as keys
from quotameter.settings import Settings
from quotameter.store.engine import unit_of_work

router = APIRouter(include_in_schema=False)

PRE_SIGN_IN_SECONDS = 3600  # how long a sign-in form may stay open


def install(app: FastAPI, settings: Settings) -> None:
    """Add the console's pages, its static files and its error pages to `app`."""
    secret = settings.console_secret.get_secret_value() if settings.console_secret else None
    if secret is None:
        with unit_of_work(app.state.services.engine) as conn:
            secret = keys.console_secret(conn)
    app.state.console_sessions = Sessions(secret, settings.console_session_hours)
    for part in (router, customers.router, organization.router, actions.router, live.router):
        app.include_router(part)
    app.mount(
        "/console/static",
        StaticFiles(packages=[("quotameter.console", "static")]),
        name="console-static",
    )

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, _: SignInNeeded) -> Response:
        target = request.url.path
        if request.method == "GET" and target.startswith("/console/"):
            return redirect(f"/?next={quote(target, safe='/')}")
        return redirect("/")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, err: PageError) -> HTMLResponse:
        return render(
            request,
            "error.html",
            {"status": err.status, "message": err.message},
            current(request),
            status=err.status,
        )


def _safe_next(value: object) -> str | None:
    """Only a console path of this site: never another host (an open redirect)."""
    if isinstance(value, str) and value.startswith("/console/") and "//" not in value:
        return value
    return None


def _sign_in_page(
    request: Request, error: str | None = None, status: int = 200, nxt: str | None = None
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "signin.html",
        {
            "csrf": token,
            "error": error,
            "next": nxt or _safe_next(request.query_params.get("next")),
        },
        status=status,
    )
    response.set_cookie(
        PRE_COOKIE,
        token,
        max_age=PRE_SIGN_IN_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/", response_class=HTMLResponse)
def sign_in_form(request: Request) -> Response:
    session = current(request)
    if session is not None:
        return redirect(landing(session))
    return _sign_in_page(request)


@router.post("/", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """The key is posted once; the session cookie holds only the key's id from then on."""
    form = await request.form()
    check_csrf(form, request.cookies.get(PRE_COOKIE, ""))
    nxt = _safe_next(form.get("next"))
    presented = form.get("key")
    if not isinstance(presented, str) or not presented.strip():
        return _sign_in_page(request, "Enter an API key.", 422, nxt)
    svc = services(request)
    principal = svc.keys.verify(svc.engine, presented.strip())
    if principal is None:
        return _sign_in_page(request, "That key is unknown or has been revoked.", 401, nxt)
    if principal.role == "ingest":
        return _sign_in_page(
            request, "An ingest key sends events; it cannot sign in to the console.", 403, nxt
        )
    jar = sessions(request)
    session = Session(principal, "")
    allowed = nxt is not None and (session.admin or _own(nxt, principal.customer))
    response = redirect(nxt if nxt is not None and allowed else landing(session))
    response.set_cookie(
        COOKIE,
        jar.issue(principal, svc.now()),
        max_age=jar.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(PRE_COOKIE, path="/")
    return response


def _own(path: str, customer: str | None) -> bool:
    return customer is not None and (
        path == f"/console/customers/{customer}"
        or path.startswith(f"/console/customers/{customer}/")
    )


@router.get("/console/logout", response_class=HTMLResponse)
def sign_out_form(request: Request) -> Response:
    session = current(request)
    if session is None:
        return redirect("/")
    return render(request, "logout.html", {}, session)


@router.post("/console/logout")
async def sign_out(request: Request, session: Session = Depends(signed_in)) -> Response:
    check_csrf(await request.form(), session.csrf)
    response = redirect("/")
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/console", response_class=HTMLResponse)
@router.get("/console/", response_class=HTMLResponse)
def console_home(session: Session = Depends(signed_in)) -> Response:
    return redirect(landing(session))
