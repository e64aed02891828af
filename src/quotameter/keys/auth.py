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
"""

from __future__ import annotations

from fastapi import Depends, Request

from quotameter.errors import Forbidden, Unauthorized
from quotameter.keys.service import Principal
from quotameter.web import services


async def caller(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("authorization: missing; send 'Authorization: Bearer <key>'")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("authorization: must be 'Bearer <key>'")
    svc = services(request)
    principal = svc.keys.verify(svc.engine, presented)
    if principal is None:
        raise Unauthorized("authorization: unknown or revoked key")
    request.state.principal = principal
    return principal


async def admin_only(who: Principal = Depends(caller)) -> Principal:
    if who.role != "admin":
        raise Forbidden(f"authorization: this needs an admin key (this key's role is {who.role!r})")
    return who


async def may_ingest(who: Principal = Depends(caller)) -> Principal:
    if who.role not in ("admin", "ingest"):
        raise Forbidden(f"authorization: posting events needs an admin or ingest key (this key's role is {who.role!r})")
    return who


async def reads_customer(customer: str, who: Principal = Depends(caller)) -> Principal:
    if who.role == "admin" or (who.role == "customer" and who.customer == customer):
        return who
    if who.role == "customer":
        raise Forbidden(f"customer: this key reads customer {who.customer!r} only")
    raise Forbidden(f"authorization: this needs an admin key or customer {customer!r}'s own key "
                    f"(this key's role is {who.role!r})")
