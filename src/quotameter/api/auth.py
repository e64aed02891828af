"""Who may call what: FastAPI dependencies, one per kind of endpoint.

| dependency | admin | ingest | customer key |
| --- | --- | --- | --- |
| `admin_only` | yes | no | no |
| `may_ingest` | yes | yes | no |
| `reads_customer` (paths with `{customer}`) | yes | no | its own customer only |

A request without a valid key gets 401; a valid key that may not do this gets 403. A
customer key gets the same 403 for another customer whether or not that customer exists,
so it learns nothing about anyone else.

The dependencies are coroutines, so they run on the event loop: the key is checked against
this process's `KeyCache`, which reads the database at most once every few seconds per key.
Only a digest of the presented key is looked up and compared (in constant time), so the
time a lookup takes says nothing about any stored key.

FastAPI reads and parses a route's body before it solves the route's dependencies, so the
key itself is checked earlier, by the `KeyFirst` middleware, for every path under `/v1/`: a
request without a valid key is answered 401 before a byte of its body is read. The role
checks (403) stay in the dependencies, which need the path's parameters.
"""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from quotameter.api.guard import CLOSE, has_body
from quotameter.api.web import JSON, services
from quotameter.errors import Forbidden, Unauthorized
from quotameter.keys.service import Principal

API = "/v1/"  # every path under it needs a key; the docs and /healthz are outside


def identify(conn: HTTPConnection) -> Principal:
    """The holder of the request's key; Unauthorized without a valid one."""
    header = conn.headers.get("authorization")
    if not header:
        raise Unauthorized("authorization: missing; send 'Authorization: Bearer <key>'")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("authorization: must be 'Bearer <key>'")
    svc = services(conn)
    principal = svc.keys.verify(svc.engine, presented)
    if principal is None:
        raise Unauthorized("authorization: unknown or revoked key")
    return principal


class KeyFirst:
    """Check the key of every API request before the application sees it (see the module's
    docstring); the principal found is left in the request's state for `caller`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope).startswith(API):
            conn = HTTPConnection(scope)
            try:
                conn.state.principal = identify(conn)
            except Unauthorized as err:
                headers = {"WWW-Authenticate": "Bearer", **(CLOSE if has_body(scope) else {})}
                await JSON({"error": err.message}, status_code=401, headers=headers)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path below the application's root path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def caller(request: Request) -> Principal:
    principal: Principal | None = getattr(
        request.state, "principal", None
    )  # KeyFirst's, for /v1/ paths
    if principal is None:
        principal = request.state.principal = identify(request)
    return principal


async def admin_only(who: Principal = Depends(caller)) -> Principal:
    if who.role != "admin":
        raise Forbidden(f"authorization: this needs an admin key (this key's role is {who.role!r})")
    return who


async def may_ingest(who: Principal = Depends(caller)) -> Principal:
    if who.role not in ("admin", "ingest"):
        raise Forbidden(
            "authorization: posting events needs an admin or ingest key (this key's role is "
            f"{who.role!r})"
        )
    return who


def may_read(who: Principal, customer: str) -> bool:
    """Whether the key may read this customer: an admin key, or the customer's own key."""
    return who.role == "admin" or (who.role == "customer" and who.customer == customer)


def principal_of(scope: Scope) -> Principal | None:
    """The holder of the key `KeyFirst` found for this request, if it checked one."""
    found: Principal | None = scope.get("state", {}).get("principal")
    return found


async def reads_customer(customer: str, who: Principal = Depends(caller)) -> Principal:
    if may_read(who, customer):
        return who
    if who.role == "customer":
        raise Forbidden(f"customer: this key reads customer {who.customer!r} only")
    raise Forbidden(
        f"authorization: this needs an admin key or customer {customer!r}'s own key "
        f"(this key's role is {who.role!r})"
    )
