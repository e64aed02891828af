"""Instants: aware UTC datetimes at the edges, integer microseconds inside."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def to_us(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("instant must carry a UTC offset")
    return (at - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def rfc3339(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    text = at.isoformat(timespec="microseconds" if at.microsecond else "seconds")
    return text.replace("+00:00", "Z")
