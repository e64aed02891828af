"""The worker of `serve`: which channels its settings configure, and that it runs there."""

from __future__ import annotations

import base64

import pytest

from quotameter.delivery.emails import EmailSender
from quotameter.delivery.webhooks import WebhookSender
from quotameter.delivery.worker import policy_from, senders_from
from quotameter.settings import Settings
from support import ADMIN, ADMIN_KEY, demo_catalog

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_no_channel_configured_means_no_worker() -> None:
    assert senders_from(Settings()) == []


def test_settings_configure_smtp_and_webhooks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QUOTAMETER_SMTP_HOST", "mail.example")
    monkeypatch.setenv("QUOTAMETER_SMTP_TLS", "tls")
    monkeypatch.setenv("QUOTAMETER_SMTP_PORT", "465")
    monkeypatch.setenv("QUOTAMETER_SMTP_PASSWORD", "pw")
    monkeypatch.setenv(
        "QUOTAMETER_WEBHOOK_URLS", '["https://a.example/hook", "https://b.example/hook"]'
    )
    monkeypatch.setenv("QUOTAMETER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("QUOTAMETER_DELIVERY_MAX_ATTEMPTS", "3")
    settings = Settings()
    email, hooks = senders_from(settings)
    assert isinstance(email, EmailSender) and (
        email.host,
        email.port,
        email.tls,
        email.password,
    ) == ("mail.example", 465, "tls", "pw")
    assert isinstance(hooks, WebhookSender) and hooks.urls == [
        "https://a.example/hook",
        "https://b.example/hook",
    ]
    assert policy_from(settings).max_attempts == 3


def test_webhooks_without_a_secret_are_refused() -> None:
    with pytest.raises(ValueError, match="QUOTAMETER_WEBHOOK_SECRET is required"):
        senders_from(Settings(webhook_urls=["https://a.example/hook"]))


def test_a_server_with_smtp_configured_sends_a_recorded_notice_at_once_on_its_own(
    db_url, clock, smtp
) -> None:  # type: ignore[no-untyped-def]
    """No delivery pass is called here: the worker started by the server's lifespan sends it,
    woken by the commit of the notice (its poll, an hour, would come too late)."""
    from fastapi.testclient import TestClient

    from quotameter.server import create_app

    inbox, port = smtp
    settings = Settings(
        database_url=db_url,
        scheduler=False,
        tune_gc=False,
        admin_key=ADMIN_KEY,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        delivery_poll_seconds=3600,
    )
    app = create_app(settings, clock=clock)
    try:
        with TestClient(app, headers=ADMIN) as client:
            assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
            r = client.post(
                "/v1/customers/acme/topups", json={"feature": "media", "blocks": 1, "id": "buy-1"}
            )
            assert r.status_code == 201, r.text  # records topup.applied in the same transaction
            [mail] = inbox.wait_for(1)
            assert "acme" in mail.subject and mail.rcpt
            [notice] = client.get("/v1/customers/acme/notifications").json()["notifications"]
            assert notice["type"] == "topup.applied"
    finally:
        app.state.services.engine.dispose()
