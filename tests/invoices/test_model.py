"""Invoice arithmetic, pure: rounding, tiers, fees, proration."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from quotameter.catalog.model import PlanSpec, Tier
from quotameter.invoices import model
from quotameter.invoices.model import FeatureUsage, PlanChange, Topup

D = Decimal
WHEN = datetime(2026, 3, 11, 8, tzinfo=UTC)


def plan(*prices: dict, currency: str = "USD") -> PlanSpec:
    return PlanSpec.model_validate(
        {"prices": list(prices), "currency": currency, "entitlements": {"f": {"meter": "m"}}}
    )


def test_57_participant_minutes_at_half_a_cent_round_half_up_to_29_cents() -> None:
    p = plan({"type": "unit", "feature": "f", "unit_price": "0.005"})
    [line] = model.usage_lines("connector", p, {"f": FeatureUsage("f", "minute", D(57), D(0))})
    assert (line.kind, line.quantity, line.unit_price, line.amount) == (
        "unit",
        D(57),
        D("0.005"),
        D("0.29"),
    )


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    assert model.round_money(D("0.285"), "USD") == D("0.29")
    assert model.round_money(D("0.2849"), "USD") == D("0.28")
    assert model.round_money(D("-0.285"), "USD") == D("-0.29")
    assert model.round_money(D("12.5"), "JPY") == D("13")
    assert model.round_money(D("1.0005"), "KWD") == D("1.001")


def test_two_topup_blocks_cost_their_recorded_price() -> None:
    [line] = model.topup_lines("basic", "USD", [Topup("t1", "media", 2, D("10.00"), WHEN)])
    assert (line.kind, line.quantity, line.unit_price, line.amount) == (
        "topup",
        D(2),
        D("5.00"),
        D("10.00"),
    )


def test_overage_of_a_30_hour_maximum_on_25_included_at_20_per_hour() -> None:
    p = plan(
        {"type": "flat", "amount": "299.00"},
        {"type": "overage", "feature": "f", "unit_price": "20.00"},
    )
    [line] = model.usage_lines("pro", p, {"f": FeatureUsage("f", "hour", D(30), D(5))})
    assert (line.kind, line.quantity, line.amount) == ("overage", D(5), D("100.00"))
    assert model.usage_lines("pro", p, {"f": FeatureUsage("f", "hour", D(20), D(0))}) == []


def test_proration_of_an_upgrade_from_500_to_900_one_third_into_the_period() -> None:
    change = PlanChange(WHEN, "s100k", "s200k", "auto_upgrade", D(2) / D(3))
    line = model.proration_line(change, D(500), D(900), "USD")
    assert line is not None
    assert (line.kind, line.unit_price, line.amount) == ("proration", D(400), D("266.67"))
    assert model.proration_line(change, D(900), D(500), "USD").amount == D("-266.67")  # type: ignore[union-attr]
    assert model.proration_line(change, D(500), D(500), "USD") is None


def test_fees_flat_and_per_seat() -> None:
    p = plan({"type": "flat", "amount": "10.00"}, {"type": "per_seat", "amount": "2.50"})
    lines = model.fee_lines("team", p, 7)
    assert [(line.kind, line.amount) for line in lines] == [
        ("flat", D("10.00")),
        ("per_seat", D("17.50")),
    ]
    assert model.plan_fee(p, 7) == D("27.50")


def test_graduated_tiers_price_each_slice() -> None:
    p = plan(
        {
            "type": "graduated",
            "feature": "f",
            "tiers": [
                {"up_to": 100, "unit_price": "0.10"},
                {"up_to": 1000, "unit_price": "0.05"},
                {"unit_price": "0.01"},
            ],
        }
    )
    lines = model.usage_lines("g", p, {"f": FeatureUsage("f", "call", D(1500), D(0))})
    assert [(line.quantity, line.amount) for line in lines] == [
        (D(100), D("10.00")),
        (D(900), D("45.00")),
        (D(500), D("5.00")),
    ]
    assert model.total(lines) == D("60.00")


tiers = st.lists(
    st.decimals(min_value=1, max_value=10_000, places=2), min_size=1, max_size=5, unique=True
).map(lambda bounds: [Tier(up_to=b, unit_price=D("0.01")) for b in sorted(bounds)])


@given(tiers, st.booleans(), st.decimals(min_value=0, max_value=100_000, places=3))
def test_tier_slices_add_up_to_the_usage(
    bounded: list[Tier], open_last: bool, usage: Decimal
) -> None:
    ladder = bounded + ([Tier(up_to=None, unit_price=D("0.01"))] if open_last else [])
    slices = model.tier_quantities(ladder, usage)
    assert sum(slices, D(0)) == usage
    assert all(s >= 0 for s in slices)
    below = D(0)
    # Every tier but the last holds at most its width.
    for tier, qty in zip(ladder[:-1], slices[:-1], strict=True):
        assert qty <= tier.up_to - below  # type: ignore[operator]
        below = tier.up_to  # type: ignore[assignment]


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=6))
def test_rounded_amount_is_within_half_a_cent_and_on_the_cent(amount: Decimal) -> None:
    rounded = model.round_money(amount, "USD")
    assert rounded == rounded.quantize(D("0.01"))
    assert abs(rounded - amount) <= D("0.005")
    if abs(rounded - amount) == D("0.005"):  # a tie goes away from zero
        assert abs(rounded) > abs(amount)
