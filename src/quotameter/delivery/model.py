"""What a delivery says and when it is tried again: pure functions, no I/O.

`describe` turns a recorded notice (and the plan it was recorded under) into the words of
an e-mail: what happened, the numbers, and what the customer can do about it. `retry_at`
is the backoff schedule; `after_failure` decides between another try and the dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from quotameter.catalog.model import OveragePrice, PlanSpec
from quotameter.decimals import EXACT
from quotameter.money import padded, round_money
from quotameter.notice_kinds import NoticeKind
from quotameter.wording import plural

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"
EMAIL, WEBHOOK = "email", "webhook"


@dataclass(frozen=True)
class Policy:
    """How hard to try. Defaults: retries after 30 s, 1, 2, 4, 8, 16, 32 min, then hourly,
    and the dead letter after the 10th failed attempt (about 3 h 4 min after the first)."""

    max_attempts: int = 10
    backoff_us: int = 30_000_000
    backoff_max_us: int = 3_600_000_000
    lease_us: int = 300_000_000  # longer than any SMTP/HTTP timeout


def retry_delay_us(attempts: int, policy: Policy) -> int:
    """Wait after the `attempts`-th failed attempt (1-based): exponential, capped."""
    exponent = min(max(attempts - 1, 0), 62)
    return min(policy.backoff_max_us, policy.backoff_us * (1 << exponent))


def after_failure(attempts: int, now_us: int, policy: Policy) -> tuple[str, int]:
    """(status, next_attempt_us) once attempt number `attempts` failed."""
    if attempts >= policy.max_attempts:
        return DEAD, now_us
    return PENDING, now_us + retry_delay_us(attempts, policy)


@dataclass(frozen=True)
class Notice:
    id: int
    customer: str
    type: str
    feature: str | None
    percent: Decimal | None
    period_start: datetime | None
    period_end: datetime | None
    at: datetime
    recipients: dict[str, Any]
    details: dict[str, Any]
    timezone: str = "UTC"  # the customer's: instants in the e-mail are written in it

    @property
    def emails(self) -> list[str]:
        return list(dict.fromkeys(self.recipients.get("email") or []))


@dataclass(frozen=True)
class Description:
    subject: str
    headline: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def number(value: Decimal | str | int | None) -> str:
    """4250 -> "4,250"; 12.50 -> "12.5"; exact, never through a float."""
    if value is None:
        return "-"
    d = Decimal(str(value))
    if d == d.to_integral_value():
        return f"{d.quantize(Decimal(1)):,}"
    return f"{d.normalize():,f}"


def money(value: Decimal | str, currency: str) -> str:
    """An amount with exactly its currency's places: 1,299.00; JPY 500."""
    return f"{round_money(Decimal(str(value)), currency):,}"


def unit_price(value: Decimal | str, currency: str) -> str:
    """A unit price with at least its currency's places: 20.00, 0.005 (never rounded to 0.01)."""
    return f"{padded(Decimal(str(value)), currency):,f}"


def percent_of(usage: Decimal, limit: Decimal | None) -> Decimal | None:
    if limit is None or limit == 0:
        return None
    return (usage * 100 / limit).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP, context=EXACT
    )  # any size


def when(at: datetime | None, tz: str = "UTC") -> str:
    """An instant in the customer's zone, named: "2026-04-01 00:00 Europe/Berlin"."""
    if at is None:
        return "-"
    return f"{at.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M} {tz}"


def describe(notice: Notice, plans: dict[str, PlanSpec]) -> Description:
    """The words of a notice. `plans`: the catalog's plans (for top-ups, next plans, prices)."""
    d = notice.details
    feature = notice.feature or "usage"
    unit = d.get("unit")
    usage = Decimal(str(d["usage"])) if d.get("usage") is not None else None
    limit = Decimal(str(d["limit"])) if d.get("limit") is not None else None
    hard = Decimal(str(d["hard_limit"])) if d.get("hard_limit") is not None else None
    who = notice.customer
    facts: list[tuple[str, str]] = []
    if usage is not None:
        facts.append(("Used", f"{number(usage)} {plural(unit, usage)}"))
    if limit is not None:
        facts.append(("Limit", f"{number(limit)} {plural(unit, limit)}"))
        pct = percent_of(usage, limit) if usage is not None else None
        if pct is not None and usage is not None:
            remaining = max(limit - usage, Decimal(0))
            facts.append(("Percent used", f"{number(pct)} %"))
            facts.append(("Remaining", f"{number(remaining)} {plural(unit)}"))
    if hard is not None and hard != limit:
        facts.append(("Blocked at", f"{number(hard)} {plural(unit, hard)}"))
    if notice.period_end is not None:
        facts.append(("Period ends", when(notice.period_end, notice.timezone)))
    facts.append(("Plan", str(d.get("plan", "-"))))

    kind = notice.type
    pct_text = number(notice.percent) if notice.percent is not None else "?"
    if kind == NoticeKind.USAGE_THRESHOLD:
        left = number(Decimal(100) - notice.percent) if notice.percent is not None else "?"
        subject = f"{who}: {pct_text} % of your {feature} allowance used ({left} % left)"
        headline = (
            f"{who} has used {number(usage)} of {number(limit)} {plural(unit, limit)} of {feature} "
            f"this period, past the {pct_text} % mark."
        )
    elif kind == NoticeKind.USAGE_EXHAUSTED:
        subject = f"{who}: your {feature} allowance is used up"
        headline = (
            f"{who} has used all {number(limit)} {plural(unit, limit)} of {feature} "
            "included this period."
        )
    elif kind == NoticeKind.ACCESS_BLOCKED:
        subject = f"{who}: {feature} is blocked"
        headline = (
            f"{who} reached the limit of {number(hard if hard is not None else limit)} "
            f"{plural(unit)} of {feature}: it is disabled for every member of the organization "
            "until more is available."
        )
    elif kind == NoticeKind.ACCESS_RESTORED:
        subject = f"{who}: {feature} is available again"
        headline = f"{feature} is available again for every member of {who}."
    elif kind == NoticeKind.PLAN_UPGRADING:
        subject = f"{who}: upgrading from {d.get('from_plan')} to {d.get('to_plan')}"
        headline = (
            f"{who} used up its {feature} allowance and has auto-upgrade on: "
            f"the subscription is moving from {d.get('from_plan')} to {d.get('to_plan')}."
        )
    elif kind == NoticeKind.PLAN_UPGRADED:
        subject = f"{who}: upgraded to {d.get('to_plan')}"
        headline = (
            f"{who} is now on the {d.get('to_plan')} plan (was {d.get('from_plan')}) "
            f"and stays there; the new {feature} limit is {number(limit)} {plural(unit, limit)}."
        )
    elif kind == NoticeKind.TOPUP_APPLIED:
        subject = f"{who}: {d.get('blocks') or ''} top-up block(s) of {feature} added".replace(
            ":  ", ": "
        )
        headline = (
            f"{number(d.get('amount'))} more of {feature} are available to {who} from now on."
        )
        facts = [("Added", number(d.get("amount"))), ("Price", str(d.get("price", "-")))]
    else:
        subject = f"{who}: {kind}"
        headline = f"{kind} for {feature}."
    return Description(subject, headline, facts, advice(notice, plans))


# The kinds of notice after which more allowance helps: advice tells how to get it.
_SHORT_OF_ALLOWANCE = (
    NoticeKind.USAGE_THRESHOLD,
    NoticeKind.USAGE_EXHAUSTED,
    NoticeKind.ACCESS_BLOCKED,
)


def advice(notice: Notice, plans: dict[str, PlanSpec]) -> list[str]:
    """What the customer can do: buy a block, upgrade, or wait for the reset."""
    kind = notice.type
    d = notice.details
    plan = plans.get(str(d.get("plan")))
    if kind == NoticeKind.ACCESS_RESTORED:
        return ["Nothing to do: usage can go on."]
    if kind in (NoticeKind.PLAN_UPGRADING, NoticeKind.PLAN_UPGRADED):
        return [
            "Nothing to do. An admin can move the subscription back to a lower plan at any time."
        ]
    if kind not in _SHORT_OF_ALLOWANCE or plan is None:
        return []
    unit = d.get("unit")
    ent = plan.entitlements.get(notice.feature or "")
    out: list[str] = []
    if ent is not None and ent.topup is not None:
        t = ent.topup
        out.append(
            f"Buy a block of {number(t.block_size)} {plural(unit, t.block_size)} for "
            f"{money(t.price, plan.currency)} {plan.currency} from the billing menu: "
            "it is added at once."
        )
    nxt = plans.get(plan.next_plan) if plan.next_plan else None
    if nxt is not None and notice.feature in nxt.entitlements:
        allowance = nxt.entitlements[notice.feature].allowance
        more = (
            f" ({number(allowance.fixed)} {plural(unit)})"
            if allowance is not None and allowance.fixed
            else ""
        )
        out.append(f"Upgrade to the {plan.next_plan} plan{more}.")
    for price in plan.prices:
        if isinstance(price, OveragePrice) and price.feature == notice.feature:
            out.append(
                f"Use beyond the limit is billed at {unit_price(price.unit_price, plan.currency)} "
                f"{plan.currency} per {unit}."
            )
    if notice.period_end is not None:
        out.append(f"Or wait: the allowance resets on {when(notice.period_end, notice.timezone)}.")
    return out
