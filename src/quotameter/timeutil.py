"""Instants: aware UTC datetimes at the edges, integer microseconds inside."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Instants taken from outside end before this: a period, a time zone or a billing month added
# to any of them is still a date Python can represent (its calendar ends with year 9999).
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch, in integer arithmetic (this runs once per event)."""
    if at.tzinfo is None:
        raise ValueError("instant must carry a UTC offset")
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def rfc3339(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    text = at.isoformat(timespec="microseconds" if at.microsecond else "seconds")
    return text.replace("+00:00", "Z")
