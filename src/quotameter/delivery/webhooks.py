"""Webhooks signed per Standard Webhooks (https://www.standardwebhooks.com/).

Each request carries `webhook-id` (the same on every retry of a notice, for the receiver to
drop repeats), `webhook-timestamp` (seconds, the attempt's instant) and `webhook-signature`
(`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the secret). `verify` is the
receiver's side, for anyone who takes these webhooks in Python.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from standardwebhooks import Webhook, WebhookVerificationError

from quotameter.catalog.model import PlanSpec
from quotameter.delivery.model import WEBHOOK, Notice
from quotameter.delivery.service import DeliveryFailed, Outgoing
from quotameter.timeutil import rfc3339

__all__ = ["WebhookSender", "WebhookVerificationError", "sign", "verify"]

TOLERANCE = timedelta(minutes=5)


def message_id(notice_id: int) -> str:
    return f"msg_quotameter_notice_{notice_id}"


def sign(msg_id: str, at: datetime, body: str, secret: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent at `at`."""
    stamp = datetime.fromtimestamp(int(at.timestamp()), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, stamp, body),
    }


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: datetime | None = None,
    tolerance: timedelta = TOLERANCE,
) -> Any:
    """Check a received webhook; its parsed JSON body, or `WebhookVerificationError`.

    `now` defaults to the clock (a timestamp further than `tolerance` from it is refused,
    against replays); pass it to check a recorded request later."""
    body = payload if isinstance(payload, str) else payload.decode()
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (
        lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("Missing required headers")
    try:
        sent = datetime.fromtimestamp(int(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookVerificationError("Invalid webhook-timestamp") from None
    now = now or datetime.now(UTC)
    if abs(now - sent) > tolerance:
        raise WebhookVerificationError(
            "Message timestamp too old" if sent < now else "Message timestamp too new"
        )
    expected = Webhook(secret).sign(msg_id, sent, body).split(",", 1)[1]
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return orjson.loads(body)
    raise WebhookVerificationError("No matching signature found")


class WebhookSender:
    """One delivery per configured endpoint; a non-2xx answer or a connection error fails
    the attempt (retried later)."""

    channel = WEBHOOK

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        Webhook(secret)  # a malformed secret fails at start, not at the first notice
        self.urls, self.secret = list(dict.fromkeys(urls)), secret
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    def targets(self, notice: Notice) -> list[str]:
        return self.urls

    def render(self, notice: Notice, plans: dict[str, PlanSpec]) -> str:
        data = {
            "id": notice.id,
            "customer": notice.customer,
            "type": notice.type,
            "feature": notice.feature,
            "percent": None if notice.percent is None else format(notice.percent.normalize(), "f"),
            "period": None
            if notice.period_start is None or notice.period_end is None
            else {"start": rfc3339(notice.period_start), "end": rfc3339(notice.period_end)},
            "at": rfc3339(notice.at),
            "recipients": notice.recipients,
            "details": notice.details,
        }
        return orjson.dumps(
            {"type": notice.type, "timestamp": rfc3339(notice.at), "data": data}
        ).decode()

    def send(self, out: Outgoing, now: datetime) -> None:
        headers = {
            "content-type": "application/json",
            "user-agent": "quotameter",
            **sign(message_id(out.notice_id), now, out.body, self.secret),
        }
        try:
            response = self.client.post(out.target, content=out.body.encode(), headers=headers)
        except httpx.HTTPError as err:
            raise DeliveryFailed(f"{type(err).__name__}: {err}") from err
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code} from {out.target}")

    def close(self) -> None:
        self.client.close()
