"""Price types as the billing systems people know publish them, with their own examples.

Stripe's tiers (https://docs.stripe.com/products-prices/pricing-models): 1–5 at 7.00, 6–10 at
6.50, 11+ at 6.00. Graduated, 15 units: 97.50; volume, 15 units: 90.00. Package: 5.00 per
100 units, rounded up, 1,050 units: 55.00. Lago's package with free units: 100 free, 10.00
per 1,000, 1,550 units: 20.00. The pure arithmetic first, then the same numbers through
`GET …/invoices/upcoming` on both databases.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotameter.catalog.model import CatalogInvalid, PackagePrice, PlanSpec, validate_catalog
from quotameter.invoices import model
from quotameter.invoices.model import FeatureUsage
from support import ADMIN, at, event

D = Decimal
STRIPE_TIERS = [
    {"up_to": 5, "unit_price": "7.00"},
    {"up_to": 10, "unit_price": "6.50"},
    {"unit_price": "6.00"},
]


def plan(*prices: dict[str, Any]) -> PlanSpec:
    return PlanSpec.model_validate({"prices": list(prices), "entitlements": {"f": {"meter": "m"}}})


def priced(p: PlanSpec, usage: Decimal | int) -> list[model.Line]:
    return model.usage_lines("p", p, {"f": FeatureUsage("f", "unit", D(usage), D(0))})


def test_stripe_graduated_15_units_is_97_50() -> None:
    lines = priced(plan({"type": "graduated", "feature": "f", "tiers": STRIPE_TIERS}), 15)
    assert [line.amount for line in lines] == [D("35.00"), D("32.50"), D("30.00")]
    assert model.total(lines) == D("97.50")


def test_stripe_volume_15_units_is_90_00_every_unit_at_the_tier_reached() -> None:
    [line] = priced(plan({"type": "volume", "feature": "f", "tiers": STRIPE_TIERS}), 15)
    assert (line.kind, line.quantity, line.unit_price, line.amount) == (
        "volume",
        D(15),
        D("6.00"),
        D("90.00"),
    )


@pytest.mark.parametrize(
    ("units", "unit_price", "total"),
    [(1, "7.00", "7.00"), (5, "7.00", "35.00"), (6, "6.50", "39.00"), (10, "6.50", "65.00")],
)
def test_volume_tiers_are_up_to_and_including(units: int, unit_price: str, total: str) -> None:
    [line] = priced(plan({"type": "volume", "feature": "f", "tiers": STRIPE_TIERS}), units)
    assert (line.unit_price, line.amount) == (D(unit_price), D(total))


def test_no_usage_no_volume_line() -> None:
    assert priced(plan({"type": "volume", "feature": "f", "tiers": STRIPE_TIERS}), 0) == []


def test_a_flat_amount_per_tier_graduated_and_volume() -> None:
    tiers = [
        {"up_to": 5, "unit_price": "0", "flat_amount": "20.00"},
        {"unit_price": "4.00", "flat_amount": "10.00"},
    ]
    graduated = priced(plan({"type": "graduated", "feature": "f", "tiers": tiers}), 8)
    # 5 in tier 1 (0 + flat 20), 3 in tier 2 (12 + flat 10)
    assert [(line.kind, line.amount) for line in graduated] == [
        ("graduated", D("0.00")),
        ("graduated", D("20.00")),
        ("graduated", D("12.00")),
        ("graduated", D("10.00")),
    ]
    assert model.total(graduated) == D("42.00")
    assert model.total(priced(plan({"type": "graduated", "feature": "f", "tiers": tiers}), 3)) == D(
        "20.00"
    )  # the second tier's flat fee only once usage reaches it
    volume = priced(plan({"type": "volume", "feature": "f", "tiers": tiers}), 8)
    assert [(line.description, line.amount) for line in volume] == [
        ("f: 8 units at tier over 5", D("32.00")),
        ("f: flat fee of tier over 5", D("10.00")),
    ]


def test_stripe_package_5_per_100_rounded_up_1050_units_is_55_00() -> None:
    price = {"type": "package", "feature": "f", "package_size": 100, "amount": "5.00"}
    [line] = priced(plan(price), 1050)
    assert (line.kind, line.quantity, line.unit_price, line.amount) == (
        "package",
        D(11),
        D("5.00"),
        D("55.00"),
    )
    assert priced(plan(price), 1000)[0].amount == D("50.00")  # exactly 10 packages
    assert priced(plan(price), 0) == []


def test_lago_package_with_100_free_units_10_per_1000_for_1550_units_is_20_00() -> None:
    price = {
        "type": "package",
        "feature": "f",
        "package_size": 1000,
        "amount": "10.00",
        "free_units": 100,
    }
    [line] = priced(plan(price), 1550)
    assert (line.quantity, line.amount) == (D(2), D("20.00"))
    assert line.description == "f: 1550 units, 100 free, 2 packages of 1000"
    assert priced(plan(price), 100) == []  # within the free units
    assert priced(plan(price), 101)[0].amount == D("10.00")


@given(
    usage=st.decimals(min_value=0, max_value=10**7, places=3),
    size=st.decimals(min_value="0.001", max_value=10**5, places=3),
    free=st.decimals(min_value=0, max_value=10**5, places=3),
)
def test_packages_are_the_fewest_that_cover_the_billable_usage(
    usage: Decimal, size: Decimal, free: Decimal
) -> None:
    price = PackagePrice(
        type="package", feature="f", package_size=size, amount=D(1), free_units=free
    )
    n = model.packages(price, usage)
    billable = max(D(0), usage - free)
    assert n * size >= billable and (n == 0 or (n - 1) * size < billable)


def test_a_minimum_spend_tops_the_period_up_and_no_more() -> None:
    p = plan(
        {"type": "flat", "amount": "10.00"},
        {"type": "unit", "feature": "f", "unit_price": "1.00"},
        {"type": "minimum", "amount": "50.00"},
    )
    low = model.fee_lines("p", p, 0) + priced(p, 15)
    line = model.minimum_line("p", p, low)
    assert line is not None and (line.kind, line.amount) == ("minimum", D("25.00"))
    assert model.total([*low, line]) == D("50.00")
    high = model.fee_lines("p", p, 0) + priced(p, 45)
    assert model.minimum_line("p", p, high) is None  # 55.00 is above the minimum


def test_charged_amounts_must_be_whole_minor_units_and_packages_positive() -> None:
    doc = {
        "meters": {"m": {"event_type": "x", "aggregation": "count"}},
        "plans": {
            "p": {
                "entitlements": {"f": {"meter": "m"}},
                "prices": [
                    {"type": "package", "feature": "f", "package_size": 0, "amount": "5.001"},
                    {"type": "minimum", "amount": "0.001"},
                    {
                        "type": "volume",
                        "feature": "f",
                        "tiers": [{"unit_price": "1", "flat_amount": "0.5"}],
                    },
                    {"type": "volume", "feature": "nope", "tiers": [{"unit_price": "1"}]},
                ],
            }
        },
    }
    with pytest.raises(CatalogInvalid) as caught:
        validate_catalog(doc)
    text = str(caught.value)
    assert "plans.p.prices[0].package_size: must be > 0" in text or "package_size" in text
    assert "plans.p.prices[1].amount: must have at most 2 decimal places in USD" in text
    assert "plans.p.prices[3].feature: unknown feature 'nope'" in text


# --- through the API, on both databases -------------------------------------------------

CATALOG = {
    "meters": {"calls": {"event_type": "api.call", "aggregation": "count", "unit": "call"}},
    "plans": {
        name: {"entitlements": {"calls": {"meter": "calls"}}, "prices": prices}
        for name, prices in {
            "graduated": [{"type": "graduated", "feature": "calls", "tiers": STRIPE_TIERS}],
            "volume": [{"type": "volume", "feature": "calls", "tiers": STRIPE_TIERS}],
            "package": [
                {"type": "package", "feature": "calls", "package_size": 100, "amount": "5.00"}
            ],
            "lago": [
                {
                    "type": "package",
                    "feature": "calls",
                    "package_size": 1000,
                    "amount": "10.00",
                    "free_units": 100,
                }
            ],
            "committed": [
                {"type": "unit", "feature": "calls", "unit_price": "0.01"},
                {"type": "minimum", "amount": "49.00"},
            ],
        }.items()
    },
    "customers": {
        "g15": {"plan": "graduated"},
        "v15": {"plan": "volume"},
        "p1050": {"plan": "package"},
        "l1550": {"plan": "lago"},
        "c300": {"plan": "committed"},
    },
}


def test_the_published_examples_through_the_running_invoice(client: Any, clock: Any) -> None:
    assert client.put("/v1/catalog", json=CATALOG).status_code == 200
    when = at("2026-03-05T10:00:00Z")
    for customer, n in {"g15": 15, "v15": 15, "p1050": 1050, "l1550": 1550, "c300": 300}.items():
        batch = [event("api.call", customer, when) for _ in range(n)]
        assert client.post("/v1/events", json=batch, headers=ADMIN).json()["accepted"] == n
    totals = {
        c: client.get(f"/v1/customers/{c}/invoices/upcoming").json()
        for c in ("g15", "v15", "p1050", "l1550", "c300")
    }
    assert {c: inv["total"] for c, inv in totals.items()} == {
        "g15": "97.50",
        "v15": "90.00",
        "p1050": "55.00",
        "l1550": "20.00",
        "c300": "49.00",
    }
    assert [(line["kind"], line["amount"]) for line in totals["c300"]["lines"]] == [
        ("unit", "3.00"),
        ("minimum", "46.00"),
    ]
