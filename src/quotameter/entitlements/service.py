"""Balances and checks: a feature's standing at an instant (recording usage by `consume`
is a use case: `quotameter.usecases.consume`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from quotameter.catalog.model import EntitlementSpec, MeterSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.customers.service import CustomerView
from quotameter.entitlements import model
from quotameter.entitlements.model import Standing
from quotameter.errors import NotFound
from quotameter.grants import service as grants
from quotameter.meters import service as meters
from quotameter.periods import Period, period_containing
from quotameter.timeutil import to_us

ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Balance:
    customer: str
    feature: str
    plan: str
    meter: str
    unit: str
    period: Period
    at: datetime
    standing: Standing
    view: CustomerView  # the customer and plan as resolved for `at`
    entitlement: EntitlementSpec

    @property
    def usage(self) -> Decimal:
        return self.standing.usage

    @property
    def level(self) -> Decimal | None:
        return self.standing.level

    @property
    def forecast(self) -> model.Forecast:
        """When the limit runs out at this period's pace so far (`model.forecast`)."""
        return model.forecast(self.standing, self.period.start, self.period.end, self.at)

    def as_dict(self) -> dict[str, object]:
        s = self.standing
        out: dict[str, object] = {
            "customer": self.customer,
            "feature": self.feature,
            "plan": self.plan,
            "meter": self.meter,
            "unit": self.unit,
            "usage": s.usage,
            "included": s.included,
            "granted": s.granted,
            "limit": s.limit,
            "hard_limit": s.hard_limit,
            "remaining": s.remaining,
            "overage": s.overage,
            "has_access": s.has_access,
            "period": {"start": self.period.start, "end": self.period.end},
            "at": self.at,
            "forecast": self.forecast.as_dict(),
        }
        if s.level is not None:
            out["level"] = s.level
        return out


def entitlement_of(view: CustomerView, feature: str) -> EntitlementSpec:
    ent = view.plan.entitlements.get(feature)
    if ent is None:
        known = ", ".join(sorted(view.plan.entitlements)) or "none"
        raise NotFound(
            f"feature: plan {view.plan_name!r} of customer {view.key!r} has no feature {feature!r} "
            f"(it has: {known})"
        )
    return ent


def period_of(view: CustomerView, ent: EntitlementSpec, at: datetime) -> Period:
    return period_containing(ent.period, at, tz=view.spec.timezone, anchor=view.spec.billing_anchor)


def balance(
    ctx: Context,
    customer: str,
    feature: str,
    at: datetime,
    *,
    whole_period: bool = False,
    view: CustomerView | None = None,
) -> Balance:
    """The standing at `at`. With `whole_period`, usage counts every event recorded for the
    period, also those timestamped after `at`: what enforcement must compare against.
    `view`: the customer's view at `at`, when the caller read it already in this transaction
    (and after any lock the balance must be read after)."""
    conn, catalog = ctx.conn, ctx.catalog
    at_us = to_us(at)
    if view is None:
        view = customers.view(ctx, customer, at_us)
    ent = entitlement_of(view, feature)
    meter = catalog.spec.meters[ent.meter]
    period = period_of(view, ent, at)
    start_us, end_us = to_us(period.start), to_us(period.end)
    usage, level = meters.usage_and_level(
        conn, meter, ent.meter, customer, start_us, end_us, end_us - 1 if whole_period else at_us
    )
    seats = customers.highest_seats(ctx, customer, start_us, at_us) if _per_seat(ent) else 0
    granted = (
        granted_in(ctx, customer, feature, ent, period, at_us) if ent.allowance else Decimal(0)
    )
    standing = model.standing(ent, usage, level, seats, granted)
    return Balance(
        customer, feature, view.plan_name, ent.meter, meter.unit, period, at, standing, view, ent
    )


def _per_seat(ent: EntitlementSpec) -> bool:
    return ent.allowance is not None and ent.allowance.per_seat is not None


def granted_in(
    ctx: Context,
    customer: str,
    feature: str,
    ent: EntitlementSpec,
    period: Period,
    at_us: int,
) -> Decimal:
    """Grants in force: those of this period, plus the unused part of the previous period's
    rollover grants (carried once: what they carry in does not roll again)."""
    conn = ctx.conn
    start_us = to_us(period.start)
    bought, carried = grants.in_force(conn, customer, feature, start_us, at_us)
    if not carried:
        return bought
    previous_end = period.start - ONE_US
    rollover = grants.rollover_total(
        conn,
        customer,
        feature,
        _previous_start(ctx, customer, feature, previous_end),
        to_us(previous_end),
    )
    if rollover == 0:
        return bought
    before = balance(ctx, customer, feature, previous_end).standing
    if (
        before.limit is None
    ):  # the period ended unlimited (a plan change): none of the grants was used
        return bought + rollover
    unused = max(Decimal(0), before.limit - before.usage)
    return bought + min(rollover, unused)


def _previous_start(ctx: Context, customer: str, feature: str, at: datetime) -> int:
    view = customers.view(ctx, customer, to_us(at))
    ent = view.plan.entitlements.get(feature)
    if ent is None:
        return -1
    return to_us(period_of(view, ent, at).start)


def meter_of(
    catalog: LoadedCatalog, view: CustomerView, feature: str
) -> tuple[EntitlementSpec, MeterSpec]:
    ent = entitlement_of(view, feature)
    return ent, catalog.spec.meters[ent.meter]
