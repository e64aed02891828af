"""Instants: aware UTC datetimes at the edges, integer microseconds inside."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from quotameter.errors import Invalid, shown

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Instants taken from outside end before this: a period, a time zone or a billing month added
# to any of them is still a date Python can represent (its calendar ends with year 9999).
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch, in integer arithmetic (this runs once per event)."""
    if at.tzinfo is None:
        raise ValueError("instant must carry a UTC offset")
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def rfc3339(at: datetime) -> str:
    at = at.astimezone(UTC)
    text = at.isoformat(timespec="microseconds" if at.microsecond else "seconds")
    return text.replace("+00:00", "Z")


# --- RFC 3339 ----------------------------------------------------------------------------

# RFC 3339 §5.6 `date-time` and nothing more: ISO 8601 and `datetime.fromisoformat` also read
# week dates, the basic format, hours alone, offsets with seconds and any separator, which a
# sender cannot have meant as a timestamp on the wire. "T" and "Z" may be lower case (§5.6).
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_WITHOUT_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
)
# What nearly every sender writes: upper case, a valid time of day and offset, at most six
# fraction digits. For these `datetime.fromisoformat` (in C) gives the same instant as
# `rfc3339_us`, several times faster; it still checks the day of the month.
COMMON_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
NO_OFFSET = "must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)"
NOT_RFC3339 = "not an RFC 3339 timestamp"
_common = COMMON_RFC3339.fullmatch
_ONE_US = timedelta(microseconds=1)
_US_PER_DAY = 86_400_000_000


def rfc3339_us(text: str) -> int:
    """The instant an RFC 3339 `date-time` denotes, in microseconds since the epoch (negative
    before 1970); ValueError with the reason for anything else.

    Digits past the microsecond are dropped (never rounded: rounding could carry into the next
    day). A leap second, 23:59:60, is the first second of the next minute, as in Unix time."""
    if _common(text) is not None:
        try:
            return (datetime.fromisoformat(text) - EPOCH) // _ONE_US
        except ValueError:  # no such day, or year 0: the full reading below says which
            pass
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        raise ValueError(NO_OFFSET if _WITHOUT_OFFSET.fullmatch(text) else NOT_RFC3339)
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not 1 <= month <= 12:
        raise ValueError(f"{NOT_RFC3339}: there is no month {month:02d}")
    if not 1 <= day <= _days_in_month(year, month):
        raise ValueError(f"{NOT_RFC3339}: {year:04d}-{month:02d} has no day {day:02d}")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(
            f"{NOT_RFC3339}: {hour:02d}:{minute:02d}:{second:02d} is not a time of day"
        )
    offset_us = 0
    if m.group(8) is not None:
        off_hour, off_minute = int(m.group(9)), int(m.group(10))
        if off_hour > 23 or off_minute > 59:
            raise ValueError(
                f"{NOT_RFC3339}: {m.group(8)}{off_hour:02d}:{off_minute:02d} is not a UTC offset"
            )
        offset_us = (off_hour * 60 + off_minute) * 60_000_000 * (1 if m.group(8) == "+" else -1)
    fraction = m.group(7) or ""
    micro = int(fraction[:6].ljust(6, "0"))
    return (
        _days_from_civil(year, month, day) * _US_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * 1_000_000
        + micro
        - offset_us
    )


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year 0 included,
    which `datetime` cannot hold): H. Hinnant's `days_from_civil`."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def system_clock() -> datetime:
    return datetime.now(UTC)


def clock_from(start: datetime) -> Callable[[], datetime]:
    """A clock that reads `start` now and then moves on with the real time: a server run at
    another instant (the demo's) still sees time pass, so its scheduler works as it would."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def instant(value: str | None, field: str, default: datetime) -> datetime:
    """An RFC 3339 timestamp from a query or a body, or `default` when absent; from the epoch
    up to year 9999, so that any period around it can be computed."""
    if value is None or value == "":
        return default
    try:
        us = rfc3339_us(_plus_sign(value))
    except ValueError as err:
        reason = str(err)
        raise Invalid(
            f"{field}: {reason}" if reason == NO_OFFSET else f"{field}: {reason} ({shown(value)})"
        ) from None
    # Compared in microseconds: 0001-01-01T00:00:00+01:00 has no datetime in UTC at all.
    if not 0 <= us < _LATEST_US:
        raise Invalid(
            f"{field}: must be on or after {EPOCH.date()} and before {LATEST.date()} (got "
            f"{shown(value)})"
        )
    return from_us(us)


_LATEST_US = to_us(LATEST)


def _plus_sign(value: str) -> str:
    """An offset's `+` left unescaped in a query string arrives as a space: put it back
    (only there, so that a space anywhere else is still refused)."""
    if len(value) > 6 and value[-6] == " ":
        return f"{value[:-6]}+{value[-5:]}"
    return value
