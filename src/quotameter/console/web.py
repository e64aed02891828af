"""What every console page shares: the signed session cookie, CSRF, templates, errors.

A session is a cookie signed with the console secret (itsdangerous), `HttpOnly`,
`SameSite=Strict`, `Secure` over HTTPS, with an expiry. It holds the key's id, never the
key, and a CSRF token: every form posts that token back, and a post without it is refused.
Each request looks the key up by id (through the process's key cache), so a revoked key ends
its sessions within the cache's interval, at once in the process that revoked it.

Who sees what: an admin key sees every customer and may act; a customer key sees its own
organization only (any other customer's page answers 404, as if it did not exist); an
ingest key cannot sign in.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from quotameter.api.web import services
from quotameter.console.formatting import FILTERS
from quotameter.keys.service import Principal

COOKIE = "qm_console"
PRE_COOKIE = "qm_signin"  # the sign-in form's CSRF token, before there is a session
SALT = "quotameter.console.session"

templates = Jinja2Templates(directory=str(files("quotameter.console") / "templates"))
templates.env.filters.update(FILTERS)


@dataclass(frozen=True)
class Session:
    """Who is signed in, and the token their forms carry."""

    principal: Principal
    csrf: str

    @property
    def admin(self) -> bool:
        return self.principal.role == "admin"

    def sees(self, customer: str) -> bool:
        return self.admin or self.principal.customer == customer


class Sessions:
    """Issues and reads signed session cookies. The expiry is signed into the cookie and read
    against the service's clock (the browser's Max-Age is only a courtesy)."""

    def __init__(self, secret: str, hours: float) -> None:
        self.max_age = int(hours * 3600)
        self._signer = URLSafeSerializer(secret, salt=SALT)

    def issue(self, principal: Principal, now: datetime) -> str:
        expires = int((now + timedelta(seconds=self.max_age)).timestamp())
        return self._signer.dumps(
            {"key": principal.key_id, "csrf": secrets.token_urlsafe(24), "exp": expires}
        )

    def read(self, cookie: str | None, now: datetime) -> tuple[str, str] | None:
        """(key id, csrf token) of a cookie signed here and not expired at `now`; else None."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        key, csrf, expires = data.get("key"), data.get("csrf"), data.get("exp")
        if not (isinstance(key, str) and isinstance(csrf, str) and isinstance(expires, int)):
            return None
        return (key, csrf) if now.timestamp() < expires else None


class SignInNeeded(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class PageError(Exception):
    """An error page (HTML) with its status: 404 for a customer this session may not see."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.console_sessions
    return found


def current(request: Request) -> Session | None:
    """The request's valid session, if any."""
    svc = services(request)
    read = sessions(request).read(request.cookies.get(COOKIE), svc.now())
    if read is None:
        return None
    key_id, csrf = read
    principal = svc.keys.by_id(svc.engine, key_id)
    if principal is None or principal.role == "ingest":
        return None
    return Session(principal, csrf)


async def signed_in(request: Request) -> Session:
    """The dependency of every console page: the session, or off to the sign-in page."""
    session = current(request)
    if session is None:
        raise SignInNeeded
    return session


async def admin(request: Request) -> Session:
    """The dependency of operators' pages and of every action: an admin's session."""
    session = await signed_in(request)
    if not session.admin:
        raise PageError(403, "This needs an admin key.")
    return session


def visible(request: Request, session: Session, customer: str) -> None:
    """A customer's page: 404 when it is not this session's to see, or does not exist in the
    catalog in force (the same answer, so a customer key learns nothing of others)."""
    if session.sees(customer):
        svc = services(request)
        with svc.engine.connect() as conn:
            if customer in svc.catalogs.current(conn).spec.customers:
                return
    raise PageError(404, f"No customer {customer!r} here.")


def check_csrf(form: FormData, expected: str) -> None:
    """A form's post must carry the session's token (or the sign-in page's)."""
    sent = form.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise PageError(403, "This form has expired or did not come from this console.")


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    session: Session | None = None,
    status: int = 200,
) -> HTMLResponse:
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {"session": session, **context},
        status_code=status,
        headers=PAGE_HEADERS,
    )
    return response


# Pages are private and never framed; scripts and styles come from this origin only.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def landing(session: Session) -> str:
    """Where a session starts: operators on the customers, an org admin on its organization."""
    if session.admin:
        return "/console/customers"
    return f"/console/customers/{session.principal.customer}"
