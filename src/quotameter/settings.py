"""Configuration from the environment (QUOTAMETER_*) and command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from quotameter.store.engine import DEFAULT_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUOTAMETER_")

    database_url: str = DEFAULT_URL
    # Registered as an admin key at start. Without it, the first start makes one and prints it once.
    admin_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # json: one object per line, for log collectors; text: for people at a terminal.
    log_format: Literal["json", "text"] = "json"
    # A request body over this many bytes is refused with 413 (at once when Content-Length says so).
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    max_batch: int = 10_000
    # A connection whose request headers are not all in this long after it opened (or its last
    # answer) is closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # A request body that stops arriving for this long is answered 408 and its connection closed.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # A key revoked through another process is refused here, and its open streams end, within this
    # long.
    key_cache_seconds: float = Field(default=5.0, gt=0)
    # Evaluate time-driven notices (open media streams) inside this process.
    scheduler: bool = True
    # Invoices are finalized this long after their period ends (in every process with the
    # scheduler on); after that, usage and changes inside the period are refused.
    invoice_grace_seconds: int = 86400
    # A request that would wait longer than this for the database's write lock (another
    # writer's transaction, on SQLite the whole file's) is answered 503 with Retry-After, and
    # nothing of it is stored; sent again, it counts once. Background work waits patiently.
    write_wait_seconds: float = Field(default=1.0, gt=0)
    # Reuse computed balances while nothing they depend on changed (entitlements/cache.py).
    balance_cache: bool = True
    # Tune the garbage collector for a long-running server (server.tune_gc); off in tests.
    tune_gc: bool = True

    # --- delivery of notices (quotameter.delivery): e-mail over SMTP and signed webhooks ---
    # Deliver inside this process, when a channel (smtp_host or webhook_urls) is configured.
    delivery: bool = True
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "quotameter@localhost"
    # A JSON list in the environment: QUOTAMETER_WEBHOOK_URLS='["https://…"]'.
    webhook_urls: list[str] = []
    # Standard Webhooks secret, "whsec_" + base64 of 24–64 random bytes; required with webhook_urls.
    webhook_secret: SecretStr | None = None
    delivery_max_attempts: int = 10  # then the delivery is dead-lettered
    delivery_backoff_seconds: float = 30.0  # first retry; doubles on each failure
    delivery_backoff_max_seconds: float = 3600.0
    # A claimed delivery not finished by then (the process died) is claimed again.
    delivery_lease_seconds: float = 300.0
    delivery_timeout_seconds: float = 10.0  # per SMTP or HTTP conversation
    delivery_poll_seconds: float = 5.0
    # In-app streams (inapp/): while any is open, one thread of the process asks this often,
    # in one query for all of them, for notices other processes recorded (this process's own
    # wake its streams at once); a stream sends a keep-alive comment after this long without
    # an event, so that proxies keep the connection open.
    inapp_poll_seconds: float = 1.0
    inapp_heartbeat_seconds: float = 15.0
    # A stream ends after this long; its client reconnects with Last-Event-ID and misses nothing.
    inapp_max_stream_seconds: float = Field(default=3600.0, gt=0)
    # --- the console (console/): pages signed in with an API key ---
    # Signs the session cookie; without one, a random secret is made once and kept in the
    # database, shared by every process.
    console_secret: SecretStr | None = None
    console_session_hours: float = Field(default=12.0, gt=0)  # a session's lifetime
