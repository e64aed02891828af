"""Usage periods: calendar months and billing cycles in a customer's time zone.

A period is a half-open UTC interval ``[start, end)``. Boundaries are local
midnights converted to UTC through ``zoneinfo``, so daylight-saving changes,
half-hour zones and historical anomalies come from the tz database rather than
from arithmetic of our own. Pure functions: the instant is always an argument.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "Period",
    "PeriodKind",
    "billing_cycle",
    "calendar_month",
    "period_containing",
    "periods_between",
]

PeriodKind = Literal["calendar_month", "billing_cycle"]

_PERIOD_KINDS: frozenset[str] = frozenset(get_args(PeriodKind))


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval of time; ``start`` and ``end`` are aware UTC datetimes."""

    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        """True when ``start <= at < end``; ``at`` may carry any UTC offset."""
        return self.start <= _to_utc(at, "at") < self.end


def calendar_month(at: datetime, tz: str = "UTC") -> Period:
    """The calendar month, in zone ``tz``, that contains ``at``."""
    return _monthly_period(_to_utc(at, "at"), 1, _zone(tz))


def billing_cycle(at: datetime, anchor: date | None, tz: str = "UTC") -> Period:
    """The monthly billing cycle, anchored on ``anchor``'s day of month, containing ``at``.

    Only the anchor's day matters: cycles repeat before and after the anchor date.
    In months shorter than that day the cycle starts on the month's last day, and
    returns to the anchor day in the months that have it.
    """
    anchor_day = 1 if anchor is None else anchor.day
    return _monthly_period(_to_utc(at, "at"), anchor_day, _zone(tz))


def period_containing(
    kind: PeriodKind, at: datetime, *, tz: str = "UTC", anchor: date | None = None
) -> Period:
    """The period of ``kind`` that contains ``at``."""
    if kind == "calendar_month":
        return calendar_month(at, tz)
    if kind == "billing_cycle":
        return billing_cycle(at, anchor, tz)
    raise ValueError(f"unknown period kind {kind!r}; expected one of {sorted(_PERIOD_KINDS)}")


def periods_between(
    kind: PeriodKind,
    start: datetime,
    end: datetime,
    *,
    tz: str = "UTC",
    anchor: date | None = None,
) -> list[Period]:
    """Every period of ``kind`` that overlaps ``[start, end)``, in order.

    Empty when ``start >= end``.
    """
    start_utc, end_utc = _to_utc(start, "start"), _to_utc(end, "end")
    periods: list[Period] = []
    if start_utc >= end_utc:
        return periods
    period = period_containing(kind, start_utc, tz=tz, anchor=anchor)
    while period.start < end_utc:
        periods.append(period)
        period = period_containing(kind, period.end, tz=tz, anchor=anchor)
    return periods


def _monthly_period(at: datetime, anchor_day: int, zone: ZoneInfo) -> Period:
    local = at.astimezone(zone)
    month = _month_index(local.year, local.month)
    # The local date is only a first guess; instants decide. Before the anchor
    # day (or before a midnight a DST gap pushed later) `at` is still in last
    # month's cycle, and clocks set back over midnight can repeat the end of a
    # day after the next period has already begun.
    start = _cycle_start(month, anchor_day, zone)
    if at < start:
        month -= 1
        start, end = _cycle_start(month, anchor_day, zone), start
    else:
        end = _cycle_start(month + 1, anchor_day, zone)
        if at >= end:
            start, end = end, _cycle_start(month + 2, anchor_day, zone)
    return Period(start, end)


def _month_index(year: int, month: int) -> int:
    """Months counted from year 0, so that stepping across a year is plain arithmetic."""
    return year * 12 + month - 1


def _cycle_start(month_index: int, anchor_day: int, zone: ZoneInfo) -> datetime:
    year, month = divmod(month_index, 12)
    month += 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return _when_clock_reads(datetime(year, month, day), zone)


def _when_clock_reads(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the clock in ``zone`` reads naive ``wall`` or later.

    An ambiguous wall time (clocks set back over it) resolves to its first
    occurrence (fold=0). A wall time skipped by a DST gap resolves to the moment
    the clocks jump, the first instant that exists after it.
    """
    reading = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall_time(reading, zone) == wall:
        return reading
    # Inside a gap, fold=0 reads the wall time with the offset from before the
    # jump and fold=1 with the offset from after it, so the jump lies between.
    other_reading = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = sorted((reading, other_reading))
    return _clock_jump(wall, low, high, zone)


def _clock_jump(wall: datetime, low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``[low, high]`` whose wall time in ``zone`` is ``wall`` or later."""
    # The tz database places transitions on whole seconds, so bisecting over
    # whole seconds finds the jump exactly.
    below, above = 0, int((high - low).total_seconds())
    while below < above:
        middle = (below + above) // 2
        if _wall_time(low + timedelta(seconds=middle), zone) >= wall:
            above = middle
        else:
            below = middle + 1
    return low + timedelta(seconds=below)


def _wall_time(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading in ``zone`` of the UTC ``instant``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _to_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {tz!r}") from error
