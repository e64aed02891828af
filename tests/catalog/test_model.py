"""The catalog contract: the demo catalog of SPEC.md, every error at once, round trips."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from quotameter.catalog.model import (
    Catalog,
    CatalogInvalid,
    EntitlementSpec,
    FlatPrice,
    MeterSpec,
    Notify,
    OveragePrice,
    Topup,
    UnitPrice,
    catalog_to_json,
    load_yaml,
    validate_catalog,
)

# The demo catalog, copied verbatim from SPEC.md ("The catalog").
DEMO_YAML = """\
meters:
  media_minutes:                      # outgoing media, merged per user, rounded up per span
    event_type: media.activity
    aggregation: duration
    stream_property: stream           # one mic/camera/screen stream of one user
    merge_property: user
    filter: {kind: [mic, camera, screen]}   # data.kind must be one of these
    rounding: {unit_seconds: 60, mode: ceil}
    unit: minute
  streaming_minutes:                  # one stream per participant, never merged
    event_type: connector.stream
    aggregation: duration
    stream_property: stream_id
    rounding: {unit_seconds: 60, mode: ceil}
    unit: minute
  managed_media_hours:                # a level that rises and falls
    event_type: media.volume
    aggregation: gauge
    delta_property: hours_delta       # or value_property for absolute readings
    unit: hour
  coedit_sessions:
    event_type: session.created
    aggregation: count
    unit: session

plans:
  basic:
    entitlements:
      media:
        meter: media_minutes
        allowance: {per_seat: 500}
        period: calendar_month
        enforcement: hard
        notify: {percent_used: [85, 90, 95], exhausted: true, recipients: admins}
        topup: {block_size: 1000, price: "5.00"}
  unlimited:
    entitlements:
      media: {meter: media_minutes, period: calendar_month, enforcement: none}
  pro:
    entitlements:
      managed_media:
        meter: managed_media_hours
        allowance: {fixed: 25}
        period: billing_cycle
        enforcement: overage
        overage_limit: 15
        notify: {percent_used: [90], recipients: owner}
    prices:
      - {type: flat, amount: "299.00"}
      - {type: overage, feature: managed_media, unit_price: "20.00"}
  sessions_100k:
    next_plan: sessions_200k
    entitlements:
      sessions:
        meter: coedit_sessions
        allowance: {fixed: 100000}
        period: calendar_month
        enforcement: soft
        slack: 0.05
        notify: {percent_remaining: [10, 1], exhausted: true, recipients: owner}
    prices: [{type: flat, amount: "500.00"}]
  sessions_200k:
    entitlements:
      sessions: {meter: coedit_sessions, allowance: {fixed: 200000}, period: calendar_month,
                 enforcement: soft, slack: 0.05,
                 notify: {percent_remaining: [10, 1], exhausted: true, recipients: owner}}
    prices: [{type: flat, amount: "900.00"}]
  connector:
    entitlements:
      audio_connector: {meter: streaming_minutes, period: billing_cycle, enforcement: none}
    prices: [{type: unit, feature: audio_connector, unit_price: "0.005"}]

customers:
  acme:   {plan: basic, seats: 10, admins: [ops@acme.example], timezone: UTC}
  studio: {plan: pro, owner: owner@studio.example, billing_anchor: "2026-01-15"}
  docs:   {plan: sessions_100k, owner: cto@docs.example, auto_upgrade: true}
  callco: {plan: connector, billing_anchor: "2026-01-01"}
"""


def demo() -> Catalog:
    return validate_catalog(load_yaml(DEMO_YAML))


def errors_of(doc: object) -> list[str]:
    with pytest.raises(CatalogInvalid) as raised:
        validate_catalog(doc)
    assert str(raised.value) == "\n".join(raised.value.errors)
    return raised.value.errors


def meter(**fields: Any) -> dict[str, Any]:
    return {"event_type": "e", "aggregation": "count", **fields}


# --- the demo catalog -------------------------------------------------------------------


def test_demo_catalog_validates_with_every_section() -> None:
    catalog = demo()

    assert set(catalog.meters) == {
        "media_minutes",
        "streaming_minutes",
        "managed_media_hours",
        "coedit_sessions",
    }
    assert set(catalog.plans) == {
        "basic",
        "unlimited",
        "pro",
        "sessions_100k",
        "sessions_200k",
        "connector",
    }
    assert set(catalog.customers) == {"acme", "studio", "docs", "callco"}


def test_demo_meters() -> None:
    media = demo().meters["media_minutes"]

    assert media.aggregation == "duration"
    assert media.filter == {"kind": ["mic", "camera", "screen"]}
    assert media.merge_property == "user"
    assert media.rounding is not None
    assert (media.rounding.unit_seconds, media.rounding.mode) == (60, "ceil")
    assert demo().meters["managed_media_hours"].delta_property == "hours_delta"
    assert demo().meters["coedit_sessions"].unit == "session"


def test_demo_entitlements_and_enforcement_defaults() -> None:
    catalog = demo()
    media = catalog.plans["basic"].entitlements["media"]
    sessions = catalog.plans["sessions_100k"].entitlements["sessions"]
    managed = catalog.plans["pro"].entitlements["managed_media"]

    assert media.allowance is not None and media.allowance.per_seat == Decimal(500)
    assert media.enforcement == "hard"
    assert media.notify == Notify(percent_used=[85, 90, 95], exhausted=True, recipients="admins")
    assert media.topup == Topup(block_size=Decimal(1000), price=Decimal("5.00"))
    assert catalog.plans["unlimited"].entitlements["media"].allowance is None
    assert sessions.enforcement == "soft"
    assert sessions.slack == Decimal("0.05")
    assert sessions.notify is not None and sessions.notify.percent_remaining == [1, 10]
    assert managed.enforcement == "overage"
    assert managed.overage_limit == Decimal(15)
    assert managed.period == "billing_cycle"
    assert catalog.plans["sessions_100k"].next_plan == "sessions_200k"


def test_demo_prices_are_exact_decimals() -> None:
    catalog = demo()

    assert catalog.plans["pro"].prices == [
        FlatPrice(type="flat", amount=Decimal("299.00")),
        OveragePrice(type="overage", feature="managed_media", unit_price=Decimal("20.00")),
    ]
    connector_price = catalog.plans["connector"].prices[0]
    assert isinstance(connector_price, UnitPrice)
    assert connector_price.unit_price == Decimal("0.005")
    assert catalog.plans["pro"].currency == "USD"


def test_demo_customers() -> None:
    catalog = demo()

    assert catalog.customers["acme"].seats == 10
    assert catalog.customers["acme"].admins == ["ops@acme.example"]
    assert catalog.customers["studio"].billing_anchor == date(2026, 1, 15)
    assert catalog.customers["studio"].timezone == "UTC"
    assert catalog.customers["docs"].auto_upgrade is True
    assert catalog.customers["callco"].auto_upgrade is False


def test_entitlement_lookup() -> None:
    catalog = demo()

    customer, plan, spec = catalog.entitlement("acme", "media")

    assert customer.plan == "basic"
    assert plan is catalog.plans["basic"]
    assert spec.meter == "media_minutes"
    assert set(catalog.plan_features("pro")) == {"managed_media"}
    with pytest.raises(KeyError):
        catalog.entitlement("acme", "sessions")
    with pytest.raises(KeyError):
        catalog.entitlement("nobody", "media")


def test_round_trip_through_json() -> None:
    import json

    catalog = demo()
    as_json = catalog_to_json(catalog)

    assert json.loads(json.dumps(as_json)) == as_json
    assert as_json["plans"]["pro"]["prices"][0]["amount"] == "299.00"
    assert as_json["customers"]["studio"]["billing_anchor"] == "2026-01-15"
    assert validate_catalog(as_json) == catalog


def test_round_trip_keeps_every_price_type() -> None:
    doc = {
        "meters": {"m": meter()},
        "plans": {
            "p": {
                "currency": "EUR",
                "entitlements": {
                    "f": {
                        "meter": "m",
                        "allowance": {"fixed": 10},
                        "topup": {"block_size": 5, "price": 1.1},
                    }
                },
                "prices": [
                    {"type": "flat", "amount": 1},
                    {"type": "per_seat", "amount": "2.50"},
                    {"type": "unit", "feature": "f", "unit_price": "0.1"},
                    {"type": "overage", "feature": "f", "unit_price": "3"},
                    {
                        "type": "graduated",
                        "feature": "f",
                        "tiers": [{"up_to": 10, "unit_price": 1}, {"unit_price": 0}],
                    },
                    {"type": "topup", "feature": "f"},
                ],
            }
        },
    }
    catalog = validate_catalog(doc)

    assert validate_catalog(catalog_to_json(catalog)) == catalog
    topup = catalog.plans["p"].entitlements["f"].topup
    assert topup is not None and topup.price == Decimal("1.1")


# --- errors -------------------------------------------------------------------------------


def test_every_independent_mistake_is_reported_with_its_path() -> None:
    doc = {
        "meters": {
            "m1": meter(aggregation="avg"),
            "x": meter(aggregation="sum"),
            "ok": meter(),
        },
        "plans": {
            "basic": {"entitlements": {"media": {"meter": "x2"}}},
            "pro": {
                "entitlements": {"managed_media": {"meter": "ok"}},
                "prices": [
                    {"type": "flat", "amount": "1"},
                    {"type": "unit", "feature": "foo", "unit_price": "1"},
                ],
            },
        },
        "customers": {"acme": {"plan": "gold"}},
    }

    assert errors_of(doc) == [
        "meters.m1.aggregation: must be one of count, sum, max, latest, unique_count, gauge, "
        "duration (got 'avg')",
        "meters.x.value_property: required for aggregation 'sum'",
        "plans.basic.entitlements.media.meter: unknown meter 'x2'",
        "plans.pro.prices[1].feature: unknown feature 'foo' (plan pro has: managed_media)",
        "customers.acme.plan: unknown plan 'gold'",
    ]


def test_a_type_error_in_one_plan_does_not_hide_a_bad_reference_in_another() -> None:
    doc = {
        "meters": {"m": meter()},
        "plans": {
            "broken": {"entitlements": {"f": {"meter": "m", "allowance": {"fixed": "lots"}}}},
            "other": {"entitlements": {"f": {"meter": "missing"}}},
        },
        "customers": {"c": {"plan": "broken"}},
    }

    assert errors_of(doc) == [
        "plans.broken.entitlements.f.allowance.fixed: must be a number (got 'lots')",
        "plans.other.entitlements.f.meter: unknown meter 'missing'",
    ]


def test_a_meter_with_a_type_error_is_not_also_reported_missing() -> None:
    doc = {"meters": {"m": meter(unit="")}, "plans": {"p": {"entitlements": {"f": {"meter": "m"}}}}}

    assert errors_of(doc) == ["meters.m.unit: must not be empty"]


def test_unknown_fields_are_named() -> None:
    doc = {
        "meters": {"m": meter(colour="red")},
        "plans": {"p": {"entitlements": {"f": {"meter": "m", "alowance": {"fixed": 1}}}}},
        "extras": {},
    }

    assert errors_of(doc) == [
        "extras: unknown field",
        "meters.m.colour: unknown field",
        "plans.p.entitlements.f.alowance: unknown field",
    ]


def test_each_meter_rule_is_its_own_error() -> None:
    doc = {
        "meters": {
            "s": meter(
                aggregation="sum",
                rounding={"unit_seconds": 60},
                idle_timeout=30,
                delta_property="d",
            ),
            "g": meter(aggregation="gauge"),
            "d": meter(aggregation="duration", merge_property="user"),
        }
    }

    assert errors_of(doc) == [
        "meters.s.value_property: required for aggregation 'sum'",
        "meters.s.rounding: only allowed for aggregation 'duration' (got 'sum')",
        "meters.s.idle_timeout: only allowed for aggregation 'duration' (got 'sum')",
        "meters.s.delta_property: only allowed for aggregation 'gauge' (got 'sum')",
        "meters.g.value_property: aggregation 'gauge' needs value_property or delta_property",
        "meters.d.stream_property: required for aggregation 'duration'",
        "meters.d.unit: a duration meter counts seconds, minutes or hours (got 'unit')",
    ]


def test_entitlement_rules() -> None:
    doc = {
        "meters": {"m": meter()},
        "plans": {
            "p": {
                "entitlements": {
                    "hard": {"meter": "m", "enforcement": "hard"},
                    "extras": {
                        "meter": "m",
                        "notify": {"exhausted": True},
                        "topup": {"block_size": 1, "price": 1},
                    },
                    "mixed": {
                        "meter": "m",
                        "allowance": {"fixed": 1},
                        "slack": 0.1,
                        "overage_limit": 5,
                    },
                    "both": {"meter": "m", "allowance": {"fixed": 1, "per_seat": 2}},
                }
            }
        },
    }

    assert errors_of(doc) == [
        "plans.p.entitlements.hard.enforcement: enforcement 'hard' needs an allowance",
        "plans.p.entitlements.extras.notify: needs an allowance",
        "plans.p.entitlements.extras.topup: needs an allowance",
        "plans.p.entitlements.mixed.slack: only allowed with enforcement 'soft' (got 'hard')",
        "plans.p.entitlements.mixed.overage_limit: only allowed with enforcement 'overage' (got "
        "'hard')",
        "plans.p.entitlements.both.allowance: needs exactly one of fixed, per_seat",
    ]


def test_soft_enforcement_defaults_slack_to_zero() -> None:
    spec = EntitlementSpec.model_validate(
        {"meter": "m", "allowance": {"fixed": 1}, "enforcement": "soft"}
    )

    assert spec.slack == Decimal(0)
    assert EntitlementSpec.model_validate({"meter": "m"}).enforcement == "none"


def test_price_errors_point_into_the_price_list() -> None:
    doc = {
        "meters": {"m": meter()},
        "plans": {
            "p": {
                "entitlements": {"f": {"meter": "m", "allowance": {"fixed": 1}}},
                "prices": [
                    {"type": "flat", "amount": "-1"},
                    {"type": "bulk"},
                    {
                        "type": "graduated",
                        "feature": "f",
                        "tiers": [{"unit_price": 1}, {"up_to": 5, "unit_price": 1}],
                    },
                    {
                        "type": "graduated",
                        "feature": "f",
                        "tiers": [{"up_to": 5, "unit_price": 1}, {"up_to": 5, "unit_price": 1}],
                    },
                ],
            },
            "q": {
                "entitlements": {"f": {"meter": "m", "allowance": {"fixed": 1}}},
                "prices": [{"type": "topup", "feature": "f"}],
            },
        },
    }

    assert errors_of(doc) == [
        "plans.p.prices[0].amount: must be >= 0 (got '-1')",
        "plans.p.prices[1].type: must be one of flat, per_seat, unit, overage, graduated, volume, "
        "package, topup, minimum (got 'bulk')",
        "plans.p.prices[2].tiers[0].up_to: only the last tier may be unbounded",
        "plans.p.prices[3].tiers[1].up_to: must be greater than the previous tier's 5",
        "plans.q.prices[0].feature: feature 'f' has no topup to sell",
    ]


def test_next_plan_must_exist_and_not_loop() -> None:
    doc = {
        "plans": {
            "a": {"next_plan": "b"},
            "b": {"next_plan": "c"},
            "c": {"next_plan": "a"},
            "d": {"next_plan": "a"},
            "self": {"next_plan": "self"},
            "e": {"next_plan": "nowhere"},
        }
    }

    assert sorted(errors_of(doc)) == [
        "plans.a.next_plan: next_plan chain loops: a -> b -> c -> a",
        "plans.e.next_plan: unknown plan 'nowhere'",
        "plans.self.next_plan: a plan cannot be its own next_plan",
    ]


def test_customer_errors() -> None:
    doc = {
        "plans": {"p": {}},
        "customers": {
            "c": {
                "plan": "p",
                "timezone": "Mars/Base",
                "admins": ["ok@x.example", "bob"],
                "seats": -1,
                "billing_anchor": "2026-02-30",
            },
            "bad name": {"plan": "p"},
        },
    }

    assert errors_of(doc) == [
        "customers.c.seats: must be >= 0 (got -1)",
        "customers.c.admins[1]: not an e-mail address: 'bob'",
        "customers.c.timezone: unknown time zone 'Mars/Base'",
        "customers.c.billing_anchor: must be a date (YYYY-MM-DD) (got '2026-02-30')",
        (
            "customers.bad name: invalid name 'bad name': use letters, digits and _ . : -, "
            "starting with a letter or digit, at most 128 characters"
        ),
    ]


def test_a_document_that_is_not_a_mapping() -> None:
    assert errors_of(["meters"]) == [
        "catalog: must be a mapping with meters, plans and customers (got a list)"
    ]
    assert errors_of({"meters": [1]}) == ["meters: must be a mapping of names (got a list)"]


def test_empty_document_is_an_empty_catalog() -> None:
    assert validate_catalog({}) == Catalog()
    assert validate_catalog({"meters": None}) == Catalog()


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(CatalogInvalid) as raised:
        load_yaml("meters:\n  m: {event_type: e\nplans: {}\n")

    [error] = raised.value.errors
    assert error.startswith("yaml: line 3, column 6: ")


def test_yaml_dates_and_floats_become_dates_and_exact_decimals() -> None:
    doc = load_yaml(
        "meters: {m: {event_type: e, aggregation: count}}\n"
        "plans: {p: {entitlements: {f: {meter: m, allowance: {fixed: 1}, "
        "enforcement: soft, slack: 0.1}}}}\n"
        "customers: {c: {plan: p, billing_anchor: 2026-01-31}}\n"
    )
    catalog = validate_catalog(doc)

    assert catalog.plans["p"].entitlements["f"].slack == Decimal("0.1")
    assert catalog.customers["c"].billing_anchor == date(2026, 1, 31)


# --- filters ------------------------------------------------------------------------------


def test_scalar_filter_is_a_one_value_list() -> None:
    assert MeterSpec.model_validate(meter(filter={"kind": "mic"})) == MeterSpec.model_validate(
        meter(filter={"kind": ["mic"]})
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "mic", "user": "u1"}, True),
        ({"kind": "screen"}, True),
        ({"kind": "speaker"}, False),
        ({"user": "u1"}, False),
        ({}, False),
    ],
)
def test_matches_a_list_filter(data: dict[str, Any], expected: bool) -> None:
    spec = MeterSpec.model_validate(meter(filter={"kind": ["mic", "camera", "screen"]}))

    assert spec.matches(data) is expected


def test_matches_needs_every_key() -> None:
    spec = MeterSpec.model_validate(meter(filter={"kind": "mic", "region": ["eu", "us"]}))

    assert spec.matches({"kind": "mic", "region": "eu"})
    assert not spec.matches({"kind": "mic"})
    assert not spec.matches({"kind": "camera", "region": "eu"})


def test_no_filter_matches_everything() -> None:
    assert MeterSpec.model_validate(meter()).matches({})


def test_matches_does_not_confuse_booleans_with_numbers() -> None:
    external = MeterSpec.model_validate(meter(filter={"external": True}))
    level = MeterSpec.model_validate(meter(filter={"level": 1}))

    assert external.filter == {"external": [True]}
    assert external.matches({"external": True})
    assert not external.matches({"external": 1})
    assert level.matches({"level": 1})
    assert level.matches({"level": 1.0})
    assert not level.matches({"level": True})


# --- bounds -------------------------------------------------------------------------------


def test_money_and_quantities_are_bounded_each_at_its_path() -> None:
    big, fine = "1e15", "0.0000000000001"  # 10^15 and 13 decimal places: one past each bound
    doc = {
        "meters": {
            "m": meter(),
            "d": meter(
                aggregation="duration",
                stream_property="s",
                unit="minute",
                idle_timeout=10**9,
                rounding={"unit_seconds": 366 * 86_400 + 1},
            ),
        },
        "plans": {
            "p": {
                "entitlements": {
                    "f": {
                        "meter": "m",
                        "allowance": {"fixed": big},
                        "enforcement": "soft",
                        "slack": fine,
                        "topup": {"block_size": "1e400", "price": "5.001"},
                    },
                    "g": {
                        "meter": "m",
                        "allowance": {"per_seat": "NaN"},
                        "enforcement": "overage",
                        "overage_limit": "-1e15",
                    },
                },
                "prices": [
                    {"type": "flat", "amount": "1e400"},
                    {"type": "per_seat", "amount": "0.125"},
                    {"type": "unit", "feature": "f", "unit_price": fine},
                    {"type": "overage", "feature": "f", "unit_price": "Infinity"},
                    {
                        "type": "graduated",
                        "feature": "f",
                        "tiers": [{"up_to": big, "unit_price": "0.5"}, {"unit_price": 1e300}],
                    },
                ],
            },
            "yen": {
                "currency": "JPY",
                "prices": [
                    {"type": "flat", "amount": "500.5"},
                    {"type": "flat", "amount": "500.00"},
                ],
            },
        },
        "customers": {"c": {"plan": "p", "seats": 1_000_000_001}},
    }

    assert errors_of(doc) == [
        "meters.d.rounding.unit_seconds: must be <= 31,622,400 (got 31622401)",
        "meters.d.idle_timeout: must be <= 31,622,400 (got 1000000000)",
        "plans.p.entitlements.f.allowance.fixed: must be less than 10^15 (got 1E+15)",
        "plans.p.entitlements.f.slack: must have at most 12 decimal places (got 1E-13)",
        "plans.p.entitlements.f.topup.block_size: must be less than 10^15 (got 1E+400)",
        "plans.p.entitlements.g.allowance.per_seat: must be a finite number (got 'NaN')",
        "plans.p.entitlements.g.overage_limit: must be >= 0 (got '-1e15')",
        "plans.p.prices[0].amount: must be less than 10^15 (got 1E+400)",
        "plans.p.prices[2].unit_price: must have at most 12 decimal places (got 1E-13)",
        "plans.p.prices[3].unit_price: must be a finite number (got 'Infinity')",
        "plans.p.prices[4].tiers[0].up_to: must be less than 10^15 (got 1E+15)",
        "plans.p.prices[4].tiers[1].unit_price: must be less than 10^15 (got 1E+300)",
        "plans.p.prices[1].amount: must have at most 2 decimal places in USD (got 0.125)",
        "plans.yen.prices[0].amount: must be a whole amount in JPY (got 500.5)",
        "customers.c.seats: must be <= 1,000,000,000 (got 1000000001)",
    ]


def test_the_largest_values_are_taken() -> None:
    top = "999999999999999.999999999999"
    doc = {
        "meters": {"m": meter()},
        "plans": {
            "p": {
                "entitlements": {
                    "f": {
                        "meter": "m",
                        "allowance": {"fixed": top},
                        "enforcement": "overage",
                        "overage_limit": top,
                        "topup": {"block_size": top, "price": "999999999999999.99"},
                    }
                },
                "prices": [
                    {"type": "per_seat", "amount": "999999999999999.99"},
                    {"type": "unit", "feature": "f", "unit_price": top},
                ],
            }
        },
        "customers": {"c": {"plan": "p", "seats": 1_000_000_000}},
    }

    assert validate_catalog(doc).plans["p"].prices[1] == UnitPrice(
        type="unit", feature="f", unit_price=Decimal(top)
    )


def test_a_stored_catalog_is_read_back_whatever_bounds_came_later() -> None:
    """A catalog applied before a bound existed keeps loading: the service reads it back on
    every start, and refusing it would leave no catalog to serve or to replace."""
    doc = {"plans": {"p": {"prices": [{"type": "flat", "amount": "1e400"}]}}}

    assert errors_of(doc) == ["plans.p.prices[0].amount: must be less than 10^15 (got 1E+400)"]
    [price] = validate_catalog(doc, stored=True).plans["p"].prices
    assert isinstance(price, FlatPrice) and price.amount == Decimal("1e400")


# --- every error at once ------------------------------------------------------------------


def test_one_catalog_with_errors_at_every_level_lists_them_all_at_once() -> None:
    """A type error hides no rule of the same spec and no reference anywhere: the author
    fixes the catalog in one pass."""
    doc = {
        "meters": {
            "typo": meter(aggregation="sum", value_property="v", unit=""),  # a field
            "level": meter(aggregation="gauge"),  # a rule of its aggregation
            "both": meter(event_type=5, aggregation="duration"),  # a field and rules of one meter
        },
        "plans": {
            "basic": {
                "next_plan": "gold",  # unknown
                "entitlements": {
                    # a field, a rule and an unknown meter in one entitlement
                    "media": {"meter": "nope", "allowance": {"fixed": "lots"}, "slack": 0.1},
                    "calls": {
                        "meter": "level",
                        "allowance": {"per_seat": 1, "fixed": 2},
                    },  # a rule one level down
                },
                "prices": [
                    {"type": "flat", "amount": "1e400"},  # out of range
                    {
                        "type": "unit",
                        "feature": "video",
                        "unit_price": "0.01",
                    },  # an unknown feature
                    {
                        "type": "graduated",
                        "feature": "media",  # a field and a rule of one price
                        "tiers": [
                            {"unit_price": 1},
                            {"up_to": "x", "unit_price": 1},
                            {"up_to": 5, "unit_price": 1},
                        ],
                    },
                    {"type": "per_seat", "amount": "0.001"},  # more places than the currency has
                ],
            },
            "a": {"next_plan": "b"},  # a loop
            "b": {"next_plan": "a", "currency": "usd"},
        },
        "customers": {
            "acme": {"plan": "silver", "timezone": "Mars/Base"}
        },  # an unknown plan and zone
        "extras": {},  # not a section
    }

    assert errors_of(doc) == [
        "extras: unknown field",
        "meters.typo.unit: must not be empty",
        "meters.level.value_property: aggregation 'gauge' needs value_property or delta_property",
        "meters.both.event_type: must be a string (got 5)",
        "meters.both.stream_property: required for aggregation 'duration'",
        "meters.both.unit: a duration meter counts seconds, minutes or hours (got 'unit')",
        "plans.basic.entitlements.media.allowance.fixed: must be a number (got 'lots')",
        "plans.basic.entitlements.media.slack: only allowed with enforcement 'soft' (got 'hard')",
        "plans.basic.entitlements.calls.allowance: needs exactly one of fixed, per_seat",
        "plans.basic.prices[0].amount: must be less than 10^15 (got 1E+400)",
        "plans.basic.prices[2].tiers[1].up_to: must be a number (got 'x')",
        "plans.basic.prices[2].tiers[0].up_to: only the last tier may be unbounded",
        "plans.basic.prices[3].amount: must have at most 2 decimal places in USD (got 0.001)",
        "plans.b.currency: must match ^[A-Z]{3}$ (got 'usd')",
        "customers.acme.timezone: unknown time zone 'Mars/Base'",
        "plans.basic.entitlements.media.meter: unknown meter 'nope'",
        "plans.basic.prices[1].feature: unknown feature 'video' (plan basic has: calls, media)",
        "plans.basic.next_plan: unknown plan 'gold'",
        "plans.a.next_plan: next_plan chain loops: a -> b -> a",
        "customers.acme.plan: unknown plan 'silver'",
    ]
