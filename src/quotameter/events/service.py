"""The raw event log: each event stored once under its (source, id), and read back as stored.

Checking a batch and folding it into meters is the record-usage use case
(`quotameter.usecases.record`); this service only keeps the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import Row as SqlRow

from quotameter.events import repository
from quotameter.events.repository import Row

__all__ = [
    "Row",
    "exists",
    "ids_stored_with",
    "insert_new",
    "of_customer",
    "of_type_after",
    "stored",
]


def insert_new(conn: Connection, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
    """Store the rows not stored yet; the (source, id) of those stored, None when all were."""
    return repository.insert_new(conn, rows)


def exists(conn: Connection, source: str, event_id: str) -> bool:
    return repository.exists(conn, source, event_id)


def stored(conn: Connection, source: str, event_id: str) -> Any:
    """The event with this identity (subject, type, time_us, data, received_us), or None."""
    return repository.stored(conn, source, event_id)


def ids_stored_with(
    conn: Connection, source: str, subject: str, type_: str, time_us: int, received_us: int
) -> list[str]:
    """The ids of one source's events of one subject and type stored by one batch."""
    return repository.ids_stored_with(conn, source, subject, type_, time_us, received_us)


def of_customer(conn: Connection, customer: str, type_: str, lo: int, hi: int) -> list[SqlRow[Any]]:
    """One customer's events of one type stamped in [lo, hi)."""
    return repository.of_customer(conn, customer, type_, lo, hi)


def of_type_after(conn: Connection, type_: str, after_pk: int, limit: int) -> list[SqlRow[Any]]:
    """Events of one type in storage order after `after_pk`."""
    return repository.of_type_after(conn, type_, after_pk, limit)


def earliest_times(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the instant of its earliest event (customers with none left out)."""
    return repository.earliest_times(conn, customers)


def last_received(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last event stamped in [lo, hi) was received."""
    return repository.last_received(conn, customer, lo, hi)


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many events each customer has (customers with none left out)."""
    return repository.count_by_customer(conn, customers)


def events_between(
    conn: Connection, customer: str, type_: str, lo: int, hi: int, page: int = repository.PAGE
) -> Iterator[Any]:
    """The customer's events of one type stamped in `[lo, hi)`, in time order, read a page at
    a time (the events of one instant never split between pages)."""
    return repository.events_between(conn, customer, type_, lo, hi, page)
