"""Invoice arithmetic, pure: prices of a plan applied to a period's numbers.

No I/O and no clock: `service.py` gathers the numbers (balances, seats, top-ups, plan
changes) and this module turns them into lines.

Rules (the choices made where the product contract leaves room):
- Every line is rounded on its own, half-up, to the currency's minor unit; the total is
  the sum of the rounded lines, so the lines always add up to what is printed.
- Plan fee (`flat`) and seat fee (`per_seat` × the highest paid-seat count in the period,
  the same count the allowances use) come from the plan in force at the period's start.
- A plan change inside the period is its own `proration` line: (new fee − old fee) ×
  the fraction of the period left at the change (a downgrade gives a credit). The fee of a
  plan is its flat amounts plus its per-seat amounts × the billed seats.
- Usage prices (`unit`, `overage`, `graduated`, `volume`, `package`) come from the plan in
  force at the end of what is billed (the period's last instant, or `at` for the running
  invoice): usage of the period carries over a plan change, so one plan prices all of it.
  A gauge's usage is its period maximum. No usage, no line: a tier's `flat_amount` is
  charged once usage reaches that tier (a first tier's flat amount needs some usage).
- `graduated`: each tier prices its own slice; `volume`: every unit at the tier the total
  lands in ("up to and including" `up_to`, as Stripe's tiers). `package`:
  ceil(max(0, usage − free_units) / package_size) packages × amount.
- Top-ups are billed at the price recorded when each was bought, one `topup` line per
  purchase, whatever the plan says now; a `topup` price entry adds nothing on top.
- `minimum` (of the plan in force at the end of what is billed): when the other lines come
  to less than its amount, one `minimum` line adds the difference.
- An invoice's number is `{customer}-{YYYYMMDD}`: the date its period starts on in the
  customer's own zone (Tokyo's December invoice is `…-20261201`, not the UTC date before).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from quotameter.catalog.model import (
    FlatPrice,
    GraduatedPrice,
    MinimumPrice,
    OveragePrice,
    PackagePrice,
    PerSeatPrice,
    PlanSpec,
    Tier,
    UnitPrice,
    VolumePrice,
)
from quotameter.decimals import canonical, exact
from quotameter.money import amount_text, padded, price_text, round_money
from quotameter.timeutil import from_us, rfc3339
from quotameter.wording import plural

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Line:
    # flat | per_seat | unit | overage | graduated | volume | package | topup | proration | minimum
    kind: str
    description: str
    plan: str
    feature: str | None
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal  # rounded

    def as_dict(self, currency: str) -> dict[str, object]:
        """Money as written everywhere (see `quotameter.money`): the amount with exactly the
        currency's places, the unit price with at least them."""
        return {
            "kind": self.kind,
            "description": self.description,
            "plan": self.plan,
            "feature": self.feature,
            "quantity": self.quantity,
            "unit_price": None
            if self.unit_price is None
            else price_text(self.unit_price, currency),
            "amount": amount_text(self.amount, currency),
        }


@dataclass(frozen=True, slots=True)
class FeatureUsage:
    """What the balance says for one feature over the billed stretch of the period."""

    feature: str
    unit: str
    usage: Decimal  # gauges: the period maximum
    overage: Decimal  # max(0, usage − limit)


@dataclass(frozen=True, slots=True)
class Topup:
    grant_id: str
    feature: str
    blocks: int
    price: Decimal  # blocks × the block price, recorded at purchase
    effective_at: datetime


@dataclass(frozen=True, slots=True)
class PlanChange:
    at: datetime
    old_plan: str
    new_plan: str
    reason: str
    fraction_left: Decimal  # of the period, in [0, 1]


@exact
def tier_quantities(tiers: Sequence[Tier], usage: Decimal) -> list[Decimal]:
    """How much of `usage` falls in each tier (graduated: each tier prices its own slice).
    The slices add up to `usage` (a last bounded tier takes whatever lies beyond it)."""
    out: list[Decimal] = []
    below = ZERO
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        top = usage if tier.up_to is None or last else min(usage, tier.up_to)
        out.append(max(ZERO, top - below))
        if tier.up_to is not None:
            below = max(below, tier.up_to)
    return out


@exact
def plan_fee(plan: PlanSpec, seats: int) -> Decimal:
    """What a plan costs per period before usage: flat amounts and seats."""
    fee = ZERO
    for price in plan.prices:
        if isinstance(price, FlatPrice):
            fee += price.amount
        elif isinstance(price, PerSeatPrice):
            fee += price.amount * seats
    return fee


@exact
def fee_lines(plan_name: str, plan: PlanSpec, seats: int) -> list[Line]:
    cur = plan.currency
    lines = []
    for price in plan.prices:
        if isinstance(price, FlatPrice):
            lines.append(
                Line(
                    "flat",
                    f"plan {plan_name}",
                    plan_name,
                    None,
                    Decimal(1),
                    price.amount,
                    round_money(price.amount, cur),
                )
            )
        elif isinstance(price, PerSeatPrice):
            lines.append(
                Line(
                    "per_seat",
                    f"plan {plan_name}: {seats} seat(s)",
                    plan_name,
                    None,
                    Decimal(seats),
                    price.amount,
                    round_money(price.amount * seats, cur),
                )
            )
    return lines


@exact
def usage_lines(plan_name: str, plan: PlanSpec, usage: dict[str, FeatureUsage]) -> list[Line]:
    cur = plan.currency
    lines: list[Line] = []
    for price in plan.prices:
        if isinstance(price, UnitPrice) and price.feature in usage:
            u = usage[price.feature]
            lines.append(
                Line(
                    "unit",
                    f"{price.feature}: {plain(u.usage)} {plural(u.unit, u.usage)}",
                    plan_name,
                    price.feature,
                    u.usage,
                    price.unit_price,
                    round_money(u.usage * price.unit_price, cur),
                )
            )
        elif isinstance(price, OveragePrice) and price.feature in usage:
            u = usage[price.feature]
            if u.overage > 0:
                lines.append(
                    Line(
                        "overage",
                        f"{price.feature}: {plain(u.overage)} {plural(u.unit, u.overage)} over the "
                        "limit",
                        plan_name,
                        price.feature,
                        u.overage,
                        price.unit_price,
                        round_money(u.overage * price.unit_price, cur),
                    )
                )
        elif isinstance(price, GraduatedPrice) and price.feature in usage:
            lines += _graduated(plan_name, cur, price, usage[price.feature])
        elif isinstance(price, VolumePrice) and price.feature in usage:
            lines += _volume(plan_name, cur, price, usage[price.feature])
        elif isinstance(price, PackagePrice) and price.feature in usage:
            line = _package(plan_name, cur, price, usage[price.feature])
            if line is not None:
                lines.append(line)
    return lines


def _span(below: Decimal, tier: Tier) -> str:
    if tier.up_to is None:
        return f"over {plain(below)}"
    return f"{plain(below)}–{plain(tier.up_to)}"


def _flat_line(
    kind: str, plan_name: str, cur: str, feature: str, span: str, tier: Tier
) -> list[Line]:
    if not tier.flat_amount:
        return []
    return [
        Line(
            kind,
            f"{feature}: flat fee of tier {span}",
            plan_name,
            feature,
            Decimal(1),
            tier.flat_amount,
            round_money(tier.flat_amount, cur),
        )
    ]


def _graduated(plan_name: str, cur: str, price: GraduatedPrice, u: FeatureUsage) -> list[Line]:
    lines: list[Line] = []
    below = ZERO
    for tier, qty in zip(price.tiers, tier_quantities(price.tiers, u.usage), strict=True):
        if qty > 0:
            span = _span(below, tier)
            lines.append(
                Line(
                    "graduated",
                    f"{price.feature}: {plain(qty)} {plural(u.unit, qty)} in tier {span}",
                    plan_name,
                    price.feature,
                    qty,
                    tier.unit_price,
                    round_money(qty * tier.unit_price, cur),
                )
            )
            lines += _flat_line("graduated", plan_name, cur, price.feature, span, tier)
        if tier.up_to is not None:
            below = tier.up_to
    return lines


@exact
def volume_tier(tiers: Sequence[Tier], usage: Decimal) -> tuple[int, Decimal]:
    """The index of the tier `usage` lands in (up to and including `up_to`; beyond the last
    bounded tier, the last), and the tier's lower end."""
    below = ZERO
    for index, tier in enumerate(tiers):
        if tier.up_to is None or usage <= tier.up_to or index == len(tiers) - 1:
            return index, below
        below = tier.up_to
    raise AssertionError("a price has at least one tier")  # the catalog requires one


def _volume(plan_name: str, cur: str, price: VolumePrice, u: FeatureUsage) -> list[Line]:
    if u.usage <= 0:
        return []
    index, below = volume_tier(price.tiers, u.usage)
    tier = price.tiers[index]
    span = _span(below, tier)
    return [
        Line(
            "volume",
            f"{price.feature}: {plain(u.usage)} {plural(u.unit, u.usage)} at tier {span}",
            plan_name,
            price.feature,
            u.usage,
            tier.unit_price,
            round_money(u.usage * tier.unit_price, cur),
        ),
        *_flat_line("volume", plan_name, cur, price.feature, span, tier),
    ]


@exact
def packages(price: PackagePrice, usage: Decimal) -> int:
    """How many packages `usage` takes: ceil(max(0, usage − free) / size)."""
    billable = max(ZERO, usage - price.free_units)
    whole, rest = divmod(billable, price.package_size)
    return int(whole) + (1 if rest else 0)


def _package(plan_name: str, cur: str, price: PackagePrice, u: FeatureUsage) -> Line | None:
    n = packages(price, u.usage)
    if n == 0:
        return None
    free = f", {plain(price.free_units)} free" if price.free_units else ""
    return Line(
        "package",
        f"{price.feature}: {plain(u.usage)} {plural(u.unit, u.usage)}{free}, {n} "
        f"{plural('package', n)} of {plain(price.package_size)}",
        plan_name,
        price.feature,
        Decimal(n),
        price.amount,
        round_money(price.amount * n, cur),
    )


@exact
def minimum_line(plan_name: str, plan: PlanSpec, lines: Sequence[Line]) -> Line | None:
    """The line that brings the period up to the plan's minimum spend, if it falls short."""
    floor = sum((p.amount for p in plan.prices if isinstance(p, MinimumPrice)), ZERO)
    short = floor - total(lines)
    if floor == 0 or short <= 0:
        return None
    cur = plan.currency
    return Line(
        "minimum",
        f"minimum spend of plan {plan_name}: {amount_text(floor, cur)} {cur}",
        plan_name,
        None,
        Decimal(1),
        short,
        round_money(short, cur),
    )


@exact
def topup_lines(plan_name: str, currency: str, topups: Iterable[Topup]) -> list[Line]:
    return [
        Line(
            "topup",
            f"{t.feature}: {t.blocks} top-up block(s) ({t.grant_id})",
            plan_name,
            t.feature,
            Decimal(t.blocks),
            padded(t.price / t.blocks, currency),
            round_money(t.price, currency),
        )
        for t in topups
    ]


@exact
def proration_line(
    change: PlanChange, old_fee: Decimal, new_fee: Decimal, currency: str
) -> Line | None:
    diff = new_fee - old_fee
    if diff == 0:
        return None
    percent = plain((change.fraction_left * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return Line(
        "proration",
        f"{change.old_plan} → {change.new_plan} ({change.reason}): fee difference "
        f"{plain(diff)} × {percent} % of the period left",
        change.new_plan,
        None,
        change.fraction_left.quantize(Decimal("0.000001")),
        diff,
        round_money(diff * change.fraction_left, currency),
    )


def closed_reason(
    field: str,
    customer: str,
    t_us: int,
    periods: Iterable[tuple[int, int]],
    through: int,
    what: str,
) -> str:
    """Why something at `t_us` is refused: the finalized period it falls in (or, before the
    first invoice, the instant up to which the customer is invoiced)."""
    for start_us, end_us in periods:
        if start_us <= t_us < end_us:
            return (
                f"{field}: the period {rfc3339(from_us(start_us))} … {rfc3339(from_us(end_us))} of "
                "customer "
                f"{customer!r} is invoiced (finalized); {what}"
            )
    return (
        f"{field}: {rfc3339(from_us(t_us))} is before {rfc3339(from_us(through))}, up to which "
        "customer "
        f"{customer!r} is invoiced (finalized); {what}"
    )


@exact
def total(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines), ZERO)


def plain(value: Decimal | None) -> str:
    if value is None:
        return ""
    return format(canonical(value), "f")


def number(customer: str, period_start: datetime, tz: str) -> str:
    """The invoice number: the customer, and the date its period starts on in zone `tz`."""
    return f"{customer}-{period_start.astimezone(ZoneInfo(tz)):%Y%m%d}"


def number_date(customer: str, number: str) -> date | None:
    """The date an invoice number of `customer` names, or None when it is not one of its
    numbers (another customer's, or not a number at all)."""
    prefix = f"{customer}-"
    digits = number[len(prefix) :]
    if not number.startswith(prefix) or len(digits) != 8 or not digits.isascii():
        return None
    if not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
