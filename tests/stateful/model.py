"""The reference for the stateful test of the whole service: what the test told the service,
and every balance recomputed from that alone.

Nothing here reads the service's incremental state or its repositories. Raw events become
meter contributions through `meters.model.interpret`, quantities come from the meter
definitions (`meters.service.usage_of`, `meters.model.gauge_levels`), periods from
`quotameter.periods` and standings from `entitlements.model.standing`; the history of seats,
plans and grants is the test's own record of what it asked for (and of the auto-upgrades
the catalog calls for).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from quotameter.catalog.model import Catalog, CustomerSpec, EntitlementSpec, MeterSpec, PlanSpec
from quotameter.entitlements.model import Standing, standing
from quotameter.events.model import EventRejected
from quotameter.meters.model import EventFacts, GaugeChange, gauge_levels, interpret
from quotameter.meters.service import usage_of
from quotameter.periods import Period, period_containing
from quotameter.timeutil import to_us

ZERO = Decimal(0)
ONE_US = timedelta(microseconds=1)
CONSUME_SOURCE = "quotameter.consume"
MAX_UPGRADES = 10


class FeatureMissing(LookupError):
    """The plan in force has no such feature: the service answers 404."""


@dataclass(frozen=True)
class StoredEvent:
    source: str
    id: str
    type: str
    subject: str
    t_us: int
    data: dict[str, Any]


@dataclass(frozen=True)
class Consumed:
    """A consume the service allowed: what it records, as events of the feature's meter."""

    customer: str
    type: str
    key: str  # customer/feature/request id
    t_us: int
    data: dict[str, Any]
    copies: int  # a count meter counts whole units


@dataclass(frozen=True)
class Change:
    effective_us: int
    seq: int  # insertion order breaks ties, as the service's row ids do
    value: Any
    reason: str = "manual"


@dataclass(frozen=True)
class Grant:
    id: str
    feature: str
    kind: str
    amount: Decimal
    rollover: bool
    effective_us: int
    period_start_us: int
    expires_us: int


@dataclass(frozen=True)
class Balance:
    plan: str
    feature: str
    period: Period
    standing: Standing


@dataclass
class Model:
    catalog: Catalog
    events: dict[tuple[str, str], StoredEvent] = field(default_factory=dict)
    consumed: list[Consumed] = field(default_factory=list)
    consume_ids: dict[str, Decimal] = field(default_factory=dict)
    seats: dict[str, list[Change]] = field(default_factory=dict)
    plans: dict[str, list[Change]] = field(default_factory=dict)
    grants: dict[str, dict[str, Grant]] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    # --- what the test did -----------------------------------------------------------------

    def add_event(self, ev: StoredEvent) -> None:
        self.events[(ev.source, ev.id)] = ev

    def add_seats(self, customer: str, seats: int, effective_us: int) -> None:
        self.seats.setdefault(customer, []).append(Change(effective_us, next(self._seq), seats))

    def add_plan(self, customer: str, plan: str, effective_us: int, reason: str = "manual") -> None:
        self.plans.setdefault(customer, []).append(
            Change(effective_us, next(self._seq), plan, reason)
        )

    def plan_history(self, customer: str) -> list[Change]:
        return sorted(self.plans.get(customer, []), key=lambda c: (c.effective_us, c.seq))

    # --- the customer as it stood ----------------------------------------------------------

    def spec(self, customer: str) -> CustomerSpec:
        return self.catalog.customers[customer]

    def plan_at(self, customer: str, t_us: int) -> tuple[str, PlanSpec]:
        changes = [c for c in self.plans.get(customer, []) if c.effective_us <= t_us]
        name = (
            max(changes, key=lambda c: (c.effective_us, c.seq)).value
            if changes
            else self.spec(customer).plan
        )
        if name not in self.catalog.plans:  # removed from the catalog since: the catalog's plan
            name = self.spec(customer).plan
        return name, self.catalog.plans[name]

    def seats_at(self, customer: str, t_us: int) -> int:
        changes = [c for c in self.seats.get(customer, []) if c.effective_us <= t_us]
        if not changes:
            return self.spec(customer).seats
        return int(max(changes, key=lambda c: (c.effective_us, c.seq)).value)

    def highest_seats(self, customer: str, start_us: int, at_us: int) -> int:
        later = [
            int(c.value) for c in self.seats.get(customer, []) if start_us < c.effective_us <= at_us
        ]
        return max([self.seats_at(customer, start_us), *later])

    def period_of(self, customer: str, ent: EntitlementSpec, at: datetime) -> Period:
        spec = self.spec(customer)
        return period_containing(ent.period, at, tz=spec.timezone, anchor=spec.billing_anchor)

    def entitlement(
        self, customer: str, feature: str, at_us: int
    ) -> tuple[str, PlanSpec, EntitlementSpec]:
        name, plan = self.plan_at(customer, at_us)
        ent = plan.entitlements.get(feature)
        if ent is None:
            raise FeatureMissing(f"plan {name!r} of {customer!r} has no feature {feature!r}")
        return name, plan, ent

    # --- meters ----------------------------------------------------------------------------

    def contributions(self, meter: MeterSpec, customer: str) -> list[Any]:
        """What the customer's acknowledged events (and allowed consumes) add to the meter
        under its definition in force; an event it cannot use counts for nothing."""
        items: list[Any] = []

        def take(key: str, t_us: int, data: dict[str, Any], copies: int = 1) -> None:
            if not meter.matches(data):
                return
            try:
                item = interpret(meter, EventFacts(customer, t_us, key, data))
            except EventRejected:
                return
            items.extend([item] * copies)

        for ev in self.events.values():
            if ev.subject == customer and ev.type == meter.event_type:
                take(f"{ev.source}\x01{ev.id}", ev.t_us, ev.data)
        for c in self.consumed:
            if c.customer == customer and c.type == meter.event_type:
                take(f"{CONSUME_SOURCE}\x01{c.key}", c.t_us, c.data, c.copies)
        return items

    def usage(
        self, meter_name: str, customer: str, lo: int, hi: int, at_us: int
    ) -> tuple[Decimal, Decimal | None]:
        """The meter's quantity in [lo, hi) at `at_us`, and for a gauge the level at `at_us`."""
        meter = self.catalog.meters[meter_name]
        items = self.contributions(meter, customer)
        quantity = usage_of(meter, items, lo, hi, at_us)
        if meter.aggregation != "gauge":
            return quantity, None
        changes: list[GaugeChange] = items
        level = ZERO
        for change, after in gauge_levels(changes):
            if change.t > at_us:
                break
            level = after
        return quantity, level

    # --- balances --------------------------------------------------------------------------

    def balance(
        self, customer: str, feature: str, at: datetime, *, whole_period: bool = False
    ) -> Balance:
        at_us = to_us(at)
        plan_name, _, ent = self.entitlement(customer, feature, at_us)
        period = self.period_of(customer, ent, at)
        start_us, end_us = to_us(period.start), to_us(period.end)
        usage, level = self.usage(
            ent.meter, customer, start_us, end_us, end_us - 1 if whole_period else at_us
        )
        per_seat = ent.allowance is not None and ent.allowance.per_seat is not None
        seats = self.highest_seats(customer, start_us, at_us) if per_seat else 0
        granted = self.granted(customer, feature, period, at_us) if ent.allowance else ZERO
        return Balance(plan_name, feature, period, standing(ent, usage, level, seats, granted))

    def granted(self, customer: str, feature: str, period: Period, at_us: int) -> Decimal:
        """Grants bought in this period and in force at `at_us`, plus the unused part of the
        previous period's rollover grants (carried once)."""
        start_us = to_us(period.start)
        mine = [g for g in self.grants.get(customer, {}).values() if g.feature == feature]
        bought = sum(
            (g.amount for g in mine if g.period_start_us == start_us and g.effective_us <= at_us),
            ZERO,
        )
        if not any(g.rollover and g.period_start_us < start_us < g.expires_us for g in mine):
            return bought
        previous_end = period.start - ONE_US
        previous_end_us = to_us(previous_end)
        try:
            _, _, ent = self.entitlement(customer, feature, previous_end_us)
        except FeatureMissing:
            return bought
        previous_start_us = to_us(self.period_of(customer, ent, previous_end).start)
        rollover = sum(
            (
                g.amount
                for g in mine
                if g.rollover
                and g.period_start_us == previous_start_us
                and g.effective_us <= previous_end_us
            ),
            ZERO,
        )
        if rollover == 0:
            return bought
        before = self.balance(customer, feature, previous_end).standing
        if before.limit is None:  # the period ended unlimited: none of the grants was used
            return bought + rollover
        return bought + min(rollover, max(ZERO, before.limit - before.usage))

    # --- what the service decides on its own -----------------------------------------------

    def evaluate(self, customer: str, now: datetime) -> list[str]:
        """The auto-upgrades an evaluation of the customer at `now` makes (the plans moved to):
        every feature of the plan, in name order, moves the subscription up the ladder while
        its usage has reached its limit and the next plan has the feature too."""
        now_us = to_us(now)
        moved: list[str] = []
        spec = self.spec(customer)
        for feature in sorted(self.plan_at(customer, now_us)[1].entitlements):
            plan = self.plan_at(customer, now_us)[1]
            ent = plan.entitlements.get(feature)
            if ent is None or not _watched(ent, spec, plan):
                continue
            for _ in range(MAX_UPGRADES):
                plan = self.plan_at(customer, now_us)[1]
                s = self.balance(customer, feature, now).standing
                nxt = plan.next_plan
                if not (
                    spec.auto_upgrade
                    and nxt
                    and s.limit is not None
                    and s.usage >= s.limit
                    and feature in self.catalog.plans[nxt].entitlements
                ):
                    break
                self.add_plan(customer, nxt, now_us, "auto_upgrade")
                moved.append(nxt)
        return moved

    def grant_outcome(
        self, customer: str, req: dict[str, Any], effective: datetime
    ) -> tuple[int, Grant | None]:
        """The status the service answers for a grant request, and the grant it then holds."""
        eff_us = to_us(effective)
        try:
            ent = self.entitlement(customer, req["feature"], eff_us)[2]
        except FeatureMissing:
            return 404, None
        if ent.allowance is None:
            return 422, None
        if req["kind"] == "topup":
            if ent.topup is None:
                return 422, None
            amount = ent.topup.block_size * req["blocks"]
        else:
            amount = Decimal(req["amount"])
        period = self.period_of(customer, ent, effective)
        expires = period.end
        if req.get("rollover"):
            expires = self.period_of(customer, ent, period.end).end
        grant = Grant(
            req["id"],
            req["feature"],
            req["kind"],
            amount,
            bool(req.get("rollover")),
            eff_us,
            to_us(period.start),
            to_us(expires),
        )
        held = self.grants.get(customer, {}).get(req["id"])
        if held is None:
            self.grants.setdefault(customer, {})[req["id"]] = grant
            return 201, grant
        if (held.feature, held.kind, held.amount) != (grant.feature, grant.kind, grant.amount):
            return 409, held
        return 200, held


def _watched(ent: EntitlementSpec, spec: CustomerSpec, plan: PlanSpec) -> bool:
    if ent.allowance is None:
        return False
    return (
        ent.notify is not None
        or ent.enforcement != "none"
        or bool(spec.auto_upgrade and plan.next_plan)
    )
