"""Usage periods: calendar months and billing cycles, as UTC intervals."""

from quotameter.periods.model import (
    Period,
    PeriodKind,
    billing_cycle,
    calendar_month,
    period_containing,
    periods_between,
)

__all__ = [
    "Period",
    "PeriodKind",
    "billing_cycle",
    "calendar_month",
    "period_containing",
    "periods_between",
]
