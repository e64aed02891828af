"""Bring a database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from quotameter.store.engine import unit_of_work

MIGRATIONS = Path(__file__).with_name("migrations")


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    cfg = config()
    # A write unit from the start: on SQLite, processes starting together (`serve --workers`)
    # then take turns, where deferred transactions would both read the old version and one
    # would fail to write.
    with unit_of_work(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
