"""Instants: aware UTC datetimes at the edges, integer microseconds inside."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


_EPOCH_ORDINAL = EPOCH.toordinal()


def to_us(at: datetime) -> int:
    """Microseconds since the epoch, in integer arithmetic (this runs once per event)."""
    offset = at.utcoffset()
    if offset is None:
        raise ValueError("instant must carry a UTC offset")
    seconds = (at.toordinal() - _EPOCH_ORDINAL) * 86_400 + at.hour * 3_600 + at.minute * 60 + at.second
    offset_us = (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds
    return seconds * 1_000_000 + at.microsecond - offset_us


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def rfc3339(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    text = at.isoformat(timespec="microseconds" if at.microsecond else "seconds")
    return text.replace("+00:00", "Z")
