"""All SQL for raw events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from quotameter.store.tables import events


def insert_new(conn: Connection, rows: Sequence[dict]) -> set[tuple[str, str]]:
    """Insert events; the (source, id) of those that were not already stored.

    Deduplication is the unique index's job: a repeat is skipped by ON CONFLICT DO NOTHING,
    also when two processes take the same event at the same moment.
    """
    if not rows:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(events).on_conflict_do_nothing(index_elements=["source", "event_id"])
            .returning(events.c.source, events.c.event_id))
    return {(r[0], r[1]) for r in conn.execute(stmt, list(rows))}
