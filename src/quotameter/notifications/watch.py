"""A cheap, conservative bound on a feature's usage between two exact evaluations.

An exact evaluation at instant T leaves, per customer and feature, a `Watch`: the usage there
plus a slack (`bound`, in the meter's unit), how many spans may still grow with time
(`rate`: usage grows by at most `rate` microseconds per microsecond), and the next level's
usage (`goal`). A batch of new events only adds to the bound what it can add at most
(`batch_increase`), without reading usage; while the bound stays below the goal at every
instant up to now, nothing can have been crossed and the customer need not be evaluated.

The invariant: usage(t) <= bound + rate * (t - T) (in the meter's unit) for every t in
[T, period end) while no event stamped after its arrival comes in (`widen`). A bound is only
ever early (too high), never late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal

from quotameter.catalog.model import DURATION_UNITS, MeterSpec
from quotameter.meters.model import (
    Contribution,
    GaugeChange,
    Simple,
    StreamPoint,
    simple_value,
    span_end,
)

# Quantities shown in a duration unit are quantized to six decimals (meters.model.to_unit):
# a usage may read up to half of that above its exact value.
QUANTUM = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Watch:
    meter: str
    period_end_us: int
    evaluated_us: int  # T
    bound: Decimal  # usage at T plus slack, in the meter's unit
    rate: int  # spans that may grow with time after T
    goal: Decimal | None  # the next level's usage; None: none left in this period
    unit_us: int | None  # microseconds per unit (duration meters), else None
    version: int = 0  # the customer's change counter (customers.state) the bound accounts for

    def widened(self, bound: Decimal, rate: int) -> Watch:
        """This watch with another bound and rate. Built directly: a batch builds one per
        watch it widens, and `dataclasses.replace` costs several times more."""
        return Watch(
            self.meter,
            self.period_end_us,
            self.evaluated_us,
            bound,
            rate,
            self.goal,
            self.unit_us,
            self.version,
        )

    def bound_at(self, t: int) -> Decimal:
        if not self.rate:
            return self.bound
        return self.bound + Decimal(self.rate * (t - self.evaluated_us)) / self._unit()

    def reached_by(self, t: int) -> bool:
        """Whether the bound reaches the goal at or before `t` (the bound only grows)."""
        return self.goal is not None and self.bound_at(t) >= self.goal

    def due_us(self) -> int | None:
        """The earliest instant the bound reaches the goal by time alone (None: never)."""
        if self.goal is None:
            return None
        if self.bound >= self.goal:
            return self.evaluated_us
        if not self.rate:
            return None
        gap = (self.goal - self.bound) * self._unit() / Decimal(self.rate)
        return self.evaluated_us + int(gap.to_integral_value(rounding=ROUND_CEILING))

    def wakeup_us(self) -> int | None:
        """When time alone calls for a look at the feature (None: never). Before the goal:
        the last instant the bound is still below it, so nothing is reached there or before,
        and the look finds the exact crossing; with no rounding slack usage may reach the
        goal at the very instant the bound does, where a look would find it already reached
        and never record it. At the period's end when the bound stays below the goal until
        then (or there is none) while spans grow: they run into the next period, where a
        look finds when they cross its levels."""
        due = self.due_us()
        if not self.rate or due == self.evaluated_us:
            return due
        if due is None or due >= self.period_end_us:
            return self.period_end_us
        return due - 1

    def _unit(self) -> Decimal:
        # Only the spans of a duration meter grow with time: a watch with a rate has a unit.
        assert self.unit_us is not None
        return Decimal(self.unit_us)


def watchable(spec: MeterSpec) -> bool:
    """Whether a meter's growth can be bounded from its new contributions alone. A max or a
    latest can jump anywhere; a rounding other than up can make a small new span join
    others each rounded down, adding much more than its length."""
    if spec.aggregation in ("max", "latest"):
        return False
    if spec.aggregation == "duration":
        return spec.rounding is None or spec.rounding.mode == "ceil"
    return True


def slack(spec: MeterSpec, rate: int) -> Decimal:
    """What the exact usage at T may still add, beyond `rate` per microsecond, to spans
    growing after T: each growing merged span rounds up by less than a unit (ceil)."""
    if spec.aggregation != "duration":
        return Decimal(0)
    return rate * _rounding_unit(spec) + QUANTUM


def _rounding_unit(spec: MeterSpec) -> Decimal:
    """A duration meter's rounding unit in its own unit (0 when it does not round)."""
    return (
        Decimal(spec.rounding.unit_seconds) / Decimal(_unit_seconds(spec))
        if spec.rounding
        else Decimal(0)
    )


def unit_us(spec: MeterSpec) -> int | None:
    return _unit_seconds(spec) * 1_000_000 if spec.aggregation == "duration" else None


def _unit_seconds(spec: MeterSpec) -> int:
    return DURATION_UNITS[spec.unit]


def batch_increase(
    spec: MeterSpec, watch: Watch, items: Sequence[Contribution], received_us: int
) -> Watch | None:
    """The watch with a batch's contributions added to its bound (and rate); None when the
    batch cannot be bounded cheaply: an event stamped after its arrival, a count, sum, unique
    value or gauge change stamped before T (`widen` moves those to T), a batch for another
    period, or a contribution whose effect is unbounded (a gauge `set`)."""
    t0 = watch.evaluated_us
    if not watchable(spec) or received_us >= watch.period_end_us:
        return None
    bound, rate = watch.bound, watch.rate
    for c in items:
        if c.t > received_us or (c.t < t0 and not isinstance(c, StreamPoint)):
            return None
        added = _added(spec, c, t0)
        if added is None:
            return None
        bound += added[0]
        rate += added[1]
    return watch.widened(bound, rate)


def widen(
    spec: MeterSpec, watch: Watch, items: Sequence[Contribution], received_us: int
) -> Watch | None:
    """`batch_increase`, also for a batch committed after T with events stamped before it (a
    live feed's batch in flight while the customer was evaluated). A count, sum, unique value
    or gauge delta adds the same whenever it is stamped, so one stamped before T is bounded
    as if stamped at T, and a batch received before T as if received then. A media stream's
    event stamped before T is bounded by what it can change from its instant on (`_added`)."""
    t = watch.evaluated_us
    if received_us >= t and all(c.t >= t for c in items):
        return batch_increase(spec, watch, items, received_us)
    if any(c.t > received_us for c in items):
        return None  # stamped ahead of its arrival
    return batch_increase(spec, watch, [_no_earlier(c, t) for c in items], max(received_us, t))


def _no_earlier(c: Contribution, t: int) -> Contribution:
    if c.t >= t or isinstance(c, StreamPoint):
        return c
    return replace(c, t=t)


def follows(watches: Sequence[Watch], version: int) -> bool:
    """Whether a batch that brought the customer's change counter to `version` may widen
    these watches: they account for every change before it (no other write slipped between
    the evaluation and this batch, and the set of watches is whole)."""
    return bool(watches) and all(w.version == version - 1 for w in watches)


def _added(spec: MeterSpec, c: Contribution, t0: int) -> tuple[Decimal, int] | None:
    """(what the contribution adds to the bound at most, growing spans it adds), for a watch
    evaluated at `t0`."""
    kind = spec.aggregation
    if isinstance(c, Simple):
        if kind == "count":
            return Decimal(c.units), 0
        if kind == "sum":
            return max(simple_value(c), Decimal(0)), 0
        return Decimal(1), 0  # unique_count: at most one new value
    if isinstance(c, GaugeChange):
        if c.set_value is not None:
            return None
        # A change that sets nothing adds a delta (meters.model.interpret wants one of them).
        assert c.delta is not None
        return max(c.delta, Decimal(0)), 0
    assert isinstance(c, StreamPoint)
    unit = _rounding_unit(spec)
    us = unit_us(spec)
    assert us is not None  # a stream point is a duration meter's
    if c.action == "span":  # one interval more: its length, rounded up once more
        return Decimal(span_end(c) - c.t) / Decimal(us) + unit, 0
    if c.t >= t0:
        if c.action == "start":  # maybe a new stream: grows from c.t >= T, rounds up once more
            return unit, 1
        return Decimal(0), 0  # a heartbeat or stop grows nothing beyond the spans already growing
    # Stamped before T: the stream's spans change from c.t on only, by one interval (its
    # replay differs from c.t until the next stored start or stop sets the same state again).
    if c.action == "stop":
        # It only takes time away; cutting a merged span in two rounds up once more.
        return unit, 0
    # A start or heartbeat may add [c.t, T), then grow as one more open stream, and round
    # up once more.
    return Decimal(t0 - c.t) / Decimal(us) + unit, 1
