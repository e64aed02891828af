"""Configuration from the environment (QUOTAMETER_*) and command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
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
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch: int = 10_000
    # Evaluate time-driven notices (open media streams) inside this process.
    scheduler: bool = True
    # Invoices are finalized this long after their period ends (in every process with the
    # scheduler on); after that, usage and changes inside the period are refused.
    invoice_grace_seconds: int = 86400
    # Reuse computed balances while nothing they depend on changed (entitlements/cache.py).
    balance_cache: bool = True
    # Tune the garbage collector for a long-running server (server.tune_gc); off in tests.
    tune_gc: bool = True

