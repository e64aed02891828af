"""The worker of `serve`: which channels its settings configure."""

from __future__ import annotations

import base64

import pytest

from quotameter.delivery.emails import EmailSender
from quotameter.delivery.webhooks import WebhookSender
from quotameter.delivery.worker import policy_from, senders_from
from quotameter.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_no_channel_configured_means_no_worker() -> None:
    assert senders_from(Settings()) == []


def test_settings_configure_smtp_and_webhooks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QUOTAMETER_SMTP_HOST", "mail.example")
    monkeypatch.setenv("QUOTAMETER_SMTP_TLS", "tls")
    monkeypatch.setenv("QUOTAMETER_SMTP_PORT", "465")
    monkeypatch.setenv("QUOTAMETER_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("QUOTAMETER_WEBHOOK_URLS", '["https://a.example/hook", "https://b.example/hook"]')
    monkeypatch.setenv("QUOTAMETER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("QUOTAMETER_DELIVERY_MAX_ATTEMPTS", "3")
    settings = Settings()
    email, hooks = senders_from(settings)
    assert isinstance(email, EmailSender) and (email.host, email.port, email.tls, email.password) == (
        "mail.example", 465, "tls", "pw")
    assert isinstance(hooks, WebhookSender) and hooks.urls == ["https://a.example/hook", "https://b.example/hook"]
    assert policy_from(settings).max_attempts == 3


def test_webhooks_without_a_secret_are_refused() -> None:
    with pytest.raises(ValueError, match="QUOTAMETER_WEBHOOK_SECRET is required"):
        senders_from(Settings(webhook_urls=["https://a.example/hook"]))
