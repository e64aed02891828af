"""The balance arithmetic (included, granted, used, remaining, limits, the forecast), as pure
functions: no I/O, no clock.

Every interface (HTTP, CLI, notices, invoices) shows numbers computed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext

from quotameter.catalog.model import Allowance, EntitlementSpec, Notify
from quotameter.decimals import EXACT, LARGEST
from quotameter.notice_kinds import NoticeKind
from quotameter.timeutil import from_us, to_us

ZERO = Decimal(0)
HUNDRED = Decimal(100)
HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Standing:
    usage: Decimal  # the period's quantity (for gauges: the highest level held in it)
    level: Decimal | None  # gauges: the level now; enforcement compares this
    included: Decimal | None  # None: unlimited
    granted: Decimal
    limit: Decimal | None
    hard_limit: Decimal | None  # None: never blocked
    remaining: Decimal | None
    overage: Decimal
    has_access: bool

    @property
    def gauge(self) -> bool:
        return self.level is not None

    @property
    def enforced_quantity(self) -> Decimal:
        return self.level if self.level is not None else self.usage


def included(allowance: Allowance | None, seats: int) -> Decimal | None:
    """The plan's allowance for the period; `seats` is the highest paid-seat count so far."""
    if allowance is None:
        return None
    if allowance.fixed is not None:
        return allowance.fixed
    # A valid allowance has exactly one of fixed and per_seat (Allowance's rules).
    assert allowance.per_seat is not None
    return allowance.per_seat * seats


def hard_limit(ent: EntitlementSpec, limit: Decimal | None) -> Decimal | None:
    if limit is None or ent.enforcement == "none":
        return None
    if ent.enforcement == "soft":
        return limit * (1 + (ent.slack or ZERO))
    if ent.enforcement == "overage":
        return None if ent.overage_limit is None else limit + ent.overage_limit
    return limit


def standing(
    ent: EntitlementSpec, usage: Decimal, level: Decimal | None, seats: int, granted: Decimal
) -> Standing:
    base = included(ent.allowance, seats)
    limit = None if base is None else base + granted
    return _standing(usage, level, base, granted, limit, hard_limit(ent, limit))


def with_usage(s: Standing, usage: Decimal) -> Standing:
    """The same standing at another usage, its allowance, grants and limits unchanged: where
    time alone moved the usage (an open stream), nothing else."""
    return _standing(usage, s.level, s.included, s.granted, s.limit, s.hard_limit)


def _standing(
    usage: Decimal,
    level: Decimal | None,
    base: Decimal | None,
    granted: Decimal,
    limit: Decimal | None,
    hard: Decimal | None,
) -> Standing:
    enforced = level if level is not None else usage
    return Standing(
        usage=usage,
        level=level,
        included=base,
        granted=granted,
        limit=limit,
        hard_limit=hard,
        remaining=None if limit is None else max(ZERO, limit - usage),
        overage=ZERO if limit is None else max(ZERO, usage - limit),
        has_access=hard is None or enforced < hard,
    )


def allows(s: Standing, amount: Decimal) -> tuple[bool, str]:
    """Whether `amount` more may be used now, and why (the reason is shown to people)."""
    if amount <= 0:
        raise ValueError("amount: must be greater than 0")
    if s.hard_limit is None:
        return True, "unlimited" if s.limit is None else "no hard limit"
    after = s.enforced_quantity + amount
    if after <= s.hard_limit:
        return True, "within the limit"
    if s.enforced_quantity >= s.hard_limit:
        return False, f"the limit of {fmt(s.hard_limit)} is reached"
    return False, (
        f"{fmt(amount)} more would exceed the limit of {fmt(s.hard_limit)} "
        f"({fmt(s.hard_limit - s.enforced_quantity)} left)"
    )


def fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


@dataclass(frozen=True, slots=True, order=True)
class Threshold:
    """A notice level of one entitlement. `key` names it in the fired-thresholds record."""

    percent_used: Decimal  # where it fires, as percent of the limit used
    kind: NoticeKind  # usage.threshold | usage.exhausted
    key: str


def thresholds(notify: Notify | None) -> list[Threshold]:
    if notify is None:
        return []
    out = {
        Threshold(Decimal(p), NoticeKind.USAGE_THRESHOLD, f"used:{p}") for p in notify.percent_used
    }
    out |= {
        Threshold(HUNDRED - r, NoticeKind.USAGE_THRESHOLD, f"remaining:{r}")
        for r in notify.percent_remaining
    }
    if notify.exhausted:
        out.add(Threshold(HUNDRED, NoticeKind.USAGE_EXHAUSTED, "exhausted"))
    return sorted(out)


def reached(s: Standing, levels: Iterable[Threshold]) -> list[Threshold]:
    """The notice levels the usage has reached (usage ≥ percent × limit)."""
    if s.limit is None:
        return []
    return [t for t in levels if s.usage * HUNDRED >= t.percent_used * s.limit]


def level_percent(key: str) -> Decimal:
    """The percent of the limit at which the level named `key` (see `thresholds`) fires."""
    kind, _, value = key.partition(":")
    if kind == "used":
        return Decimal(value)
    if kind == "remaining":
        return HUNDRED - Decimal(value)
    return HUNDRED  # exhausted


def below(s: Standing, key: str) -> bool:
    """Whether usage is now below the level named `key`, so that it may fire again. Measured
    against the limit in force, also for a level only another plan of the period defines:
    moving between plans alone is no sign that usage fell back. Without a limit, no level
    has a meaning: none is taken back."""
    return s.limit is not None and s.usage * HUNDRED < level_percent(key) * s.limit


def percent_used(s: Standing) -> Decimal | None:
    """Percent of the limit used, to the hundredth; a tiny limit far exceeded reads as the
    largest percent a notice keeps (below 10^15) rather than one too long to store."""
    if s.limit is None or s.limit == 0:
        return None
    with localcontext(EXACT):
        return min((s.usage * HUNDRED / s.limit).quantize(HUNDREDTH), LARGEST - HUNDREDTH)


# --- forecast ---------------------------------------------------------------------------------

FORECAST_METHOD = "period_pace"


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the allowance runs out at the period's pace so far (see `forecast`)."""

    runs_out_at: datetime | None  # None: not this period, or nothing to forecast
    this_period: bool  # runs_out_at falls before the period's end
    exhausted: bool  # usage has already reached the limit: runs_out_at is the instant asked

    def as_dict(self) -> dict[str, object]:
        return {
            "method": FORECAST_METHOD,
            "runs_out_at": self.runs_out_at,
            "this_period": self.this_period,
            "exhausted": self.exhausted,
        }


NO_FORECAST = Forecast(None, False, False)
_ONE_SECOND_US = 1_000_000


def forecast(s: Standing, start: datetime, end: datetime, at: datetime) -> Forecast:
    """When `s.limit` runs out if usage goes on at the period's pace so far.

    pace = usage / (at − start); it runs out at `at + (limit − usage) / pace`, rounded up to
    the whole second. Nothing to forecast (None, not this period) without a limit, for a
    gauge (a level rises and falls: it has no pace), before any usage or at the period's very
    start; a moment at or after the period's `end` is "not this period" (None). Usage already
    at or over the limit is `exhausted`: it ran out by `at`, which is the answer.
    """
    if s.limit is None:
        return NO_FORECAST
    if s.usage >= s.limit:
        return Forecast(at, True, True)
    if s.gauge or s.usage <= 0:
        return NO_FORECAST
    at_us = to_us(at)
    elapsed_us = at_us - to_us(start)
    if elapsed_us <= 0:
        return NO_FORECAST
    with localcontext(EXACT):
        left_us = int(((s.limit - s.usage) * elapsed_us / s.usage).to_integral_value(ROUND_CEILING))
    # to the whole second, rounded up: usage reaches the limit then, not before
    runs_out_us = -(-(at_us + left_us) // _ONE_SECOND_US) * _ONE_SECOND_US
    if runs_out_us >= to_us(end):
        return NO_FORECAST
    return Forecast(from_us(runs_out_us), True, False)
