"""The organization page's live part: the customer's in-app notices, for the page's banner.

`GET /console/customers/{customer}/live` is the API's notification stream
(`/v1/customers/{customer}/notifications/stream`, see api/inapp.py) for a signed-in
session: the same events (`state` first, then each in-app notice: access blocked or
restored) from the same hub, read with the session's key. An EventSource sends the session
cookie and, when it reconnects, `Last-Event-ID`, so it misses nothing; a stream ends when
the session's key is revoked, like the API's, and a stream opened without a valid session
is sent to the sign-in page (an EventSource then stops). `?max_seconds=` ends it sooner
(0: the state and what is waiting), as on the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import StreamingResponse

from quotameter.api import inapp
from quotameter.console.web import Session, signed_in, visible

router = APIRouter(include_in_schema=False)

MAX_ID = 2**63 - 1


@router.get("/console/customers/{customer}/live")
async def live(
    request: Request,
    customer: str,
    session: Session = Depends(signed_in),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    max_seconds: float | None = Query(None, ge=0, le=86_400),
) -> StreamingResponse:
    """The customer's in-app notices as server-sent events, for the page's banner."""
    visible(request, session, customer)
    return await inapp.respond(
        request,
        customer,
        session.principal.key_id,
        _resumed(last_event_id),
        False,
        max_seconds,
        "no-store",
    )


def _resumed(header: str | None) -> int | None:
    """The id an EventSource resumes after; a header that is no id is as if not sent."""
    if header is None or not header.strip().isdigit():
        return None
    value = int(header.strip())
    return value if value <= MAX_ID else None
