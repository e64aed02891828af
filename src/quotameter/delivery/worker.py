"""The delivery loop inside `serve`, and the senders its settings configure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from quotameter.catalog.service import CatalogCache
from quotameter.delivery.emails import EmailSender
from quotameter.delivery.model import Policy
from quotameter.delivery.service import Sender, deliver_due
from quotameter.delivery.webhooks import WebhookSender
from quotameter.notifications import service as notices
from quotameter.settings import Settings
from quotameter.worker import Worker

log = logging.getLogger("quotameter.delivery")


def senders_from(settings: Settings) -> list[Sender]:
    """The channels the settings configure (none: nothing to deliver)."""
    out: list[Sender] = []
    if settings.smtp_host:
        out.append(
            EmailSender(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_tls,
                settings.smtp_username,
                settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                settings.smtp_from,
                settings.delivery_timeout_seconds,
            )
        )
    if settings.webhook_urls:
        if settings.webhook_secret is None:
            raise ValueError(
                "QUOTAMETER_WEBHOOK_SECRET is required with QUOTAMETER_WEBHOOK_URLS "
                "(Standard Webhooks format: whsec_ followed by base64)"
            )
        out.append(
            WebhookSender(
                settings.webhook_urls,
                settings.webhook_secret.get_secret_value(),
                settings.delivery_timeout_seconds,
            )
        )
    return out


def policy_from(settings: Settings) -> Policy:
    return Policy(
        max_attempts=settings.delivery_max_attempts,
        backoff_us=int(settings.delivery_backoff_seconds * 1e6),
        backoff_max_us=int(settings.delivery_backoff_max_seconds * 1e6),
        lease_us=int(settings.delivery_lease_seconds * 1e6),
    )


class DeliveryWorker(Worker):
    """Runs `deliver_due` every `poll` seconds, and at once when woken: by a notice this
    process commits (see `start_delivery`), or by `stop`. A notice recorded by another
    process waits at most `poll` seconds, unless that process delivers it first."""

    def __init__(
        self,
        engine: Engine,
        catalogs: CatalogCache,
        clock: Callable[[], datetime],
        senders: list[Sender],
        policy: Policy,
        poll: float = 5.0,
        backoff_max: float = 300.0,
    ) -> None:
        super().__init__("delivery", poll, backoff_max=backoff_max, join_timeout=30.0, logger=log)
        self.engine, self.catalogs, self.clock = engine, catalogs, clock
        self.senders, self.policy = senders, policy

    def step(self) -> None:
        deliver_due(
            self.engine, self.clock(), self.senders, policy=self.policy, catalogs=self.catalogs
        )


def start_delivery(
    settings: Settings, engine: Engine, catalogs: CatalogCache, clock: Callable[[], datetime]
) -> DeliveryWorker | None:
    """The worker of a server process, started when delivery is on and a channel configured."""
    senders = senders_from(settings) if settings.delivery else []
    if not senders:
        return None
    worker = DeliveryWorker(
        engine, catalogs, clock, senders, policy_from(settings), settings.delivery_poll_seconds
    )
    notices.on_commit(engine, lambda _customers: worker.wake())
    worker.start()
    return worker
