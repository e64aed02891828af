"""The catalog's JSON Schema and its reference page: both current, the schema valid, every
example of docs/catalog.md accepted by the schema and by the service alike, and the amounts the
page states what invoices charge."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from quotameter.catalog import model
from quotameter.catalog.model import CatalogInvalid, validate_catalog
from quotameter.catalog.schema import (
    DECIMAL_PATTERN,
    POSITIVE_DECIMAL_PATTERN,
    SCHEMA_ID,
    catalog_schema,
    field_tables,
    main,
    schema_text,
)
from quotameter.invoices.model import (
    FeatureUsage,
    PlanChange,
    plan_fee,
    proration_line,
    usage_lines,
)
from support import demo_catalog

DOCS = Path(__file__).resolve().parents[2] / "docs"
REFERENCE = (DOCS / "catalog.md").read_text(encoding="utf-8")
# A fenced block, with the line before it (a marker comment, when there is one).
BLOCK = re.compile(r"(?:^(?P<before>[^\n]*)\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
FROM_DEMO = "<!-- from the demo catalog -->"


def validator() -> Any:
    return jsonschema_rs.validator_for(catalog_schema())


def as_json(doc: Any) -> Any:
    """A YAML document as an editor checks it: dates are text, as in JSON."""
    return json.loads(
        json.dumps(doc, default=lambda v: v.isoformat() if isinstance(v, date) else v)
    )


def blocks(lang: str) -> list[tuple[str, str]]:
    """(the line before, the text) of every `lang` block of docs/catalog.md."""
    return [(m["before"] or "", m["body"]) for m in BLOCK.finditer(REFERENCE) if m["lang"] == lang]


EXAMPLES = [
    pytest.param(lang, body, id=f"{lang}-{index}")
    for lang in ("yaml", "json")
    for index, (_, body) in enumerate(blocks(lang), 1)
]


# --- current ----------------------------------------------------------------------------


def test_the_schema_file_is_current() -> None:
    assert (DOCS / "catalog.schema.json").read_text(encoding="utf-8") == schema_text(), (
        "run: python -m quotameter.catalog.schema --write"
    )
    assert schema_text().endswith("}\n")
    assert json.loads(schema_text()) == catalog_schema()


def test_the_field_tables_are_current_and_cover_every_model() -> None:
    assert field_tables(REFERENCE) == REFERENCE, "run: python -m quotameter.catalog.schema --write"
    tabled = set(re.findall(r"<!-- fields: (\w+) -->", REFERENCE))
    assert tabled == set(catalog_schema()["$defs"]) | {"Catalog"}
    # Every field of every model is in a table row, with a description and an example.
    schema = catalog_schema()
    for name, spec in [*schema["$defs"].items(), ("Catalog", schema)]:
        for field, prop in spec["properties"].items():
            assert prop.get("description"), (name, field)
            assert prop.get("examples"), (name, field)
            table = REFERENCE.split(f"<!-- fields: {name} -->")[1].split("<!-- end of fields")[0]
            assert f"| `{field}` |" in table, (name, field)


def test_the_command_prints_the_schema_or_writes_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out: list[str] = []
    assert main([], out.append) == 0
    assert "".join(out) == schema_text()

    (tmp_path / "docs").mkdir()
    stale = "intro\n<!-- fields: Rounding -->\nold\n<!-- end of fields -->\nend\n"
    (tmp_path / "docs" / "catalog.md").write_text(stale, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--write"], out.append) == 0
    assert (tmp_path / "docs" / "catalog.schema.json").read_text(encoding="utf-8") == schema_text()
    written = (tmp_path / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert written.startswith("intro\n<!-- fields: Rounding -->\n| field | type |")
    assert "| `unit_seconds` | integer > 0 and ≤ 31,622,400 | required | `60` |" in written
    assert "old" not in written and written.endswith("<!-- end of fields -->\nend\n")
    assert main(["--check"], out.append) == 2


# --- valid JSON Schema ------------------------------------------------------------------


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = catalog_schema()
    jsonschema_rs.meta.validate(schema)  # raises on an invalid schema
    assert isinstance(validator(), jsonschema_rs.Draft202012Validator)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] and schema["description"]


def test_no_pydantic_keyword_is_left() -> None:
    text = schema_text()
    for keyword in ("ge", "gt", "le", "lt", "discriminator"):
        assert f'"{keyword}":' not in text, keyword


def test_every_example_and_default_in_the_schema_fits_its_field() -> None:
    schema = catalog_schema()
    checked = 0
    for name, spec in [*schema["$defs"].items(), ("Catalog", schema)]:
        for field, prop in spec["properties"].items():
            field_validator = jsonschema_rs.validator_for({"$defs": schema["$defs"], **prop})
            for value in prop.get("examples", []) + (
                [prop["default"]] if "default" in prop else []
            ):
                assert field_validator.is_valid(value), (name, field, value)
                checked += 1
    assert checked > 100


def test_decimals_are_numbers_or_decimal_strings_bounded_below() -> None:
    schema = catalog_schema()
    tier = schema["$defs"]["Tier"]["properties"]
    assert tier["unit_price"]["anyOf"] == [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DECIMAL_PATTERN},
    ]
    assert tier["up_to"]["anyOf"] == [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": POSITIVE_DECIMAL_PATTERN},
        {"type": "null"},
    ]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("5.00", True),
        ("0.005", True),
        ("0", True),
        ("1000", True),
        (0, True),
        (12.5, True),
        ("-1", False),
        (-0.5, False),
        ("five", False),
        ("", False),
        ("1.", False),
        (True, False),
    ],
)
def test_a_price_the_schema_accepts_the_service_accepts(value: object, accepted: bool) -> None:
    doc = {
        "meters": {"m": {"event_type": "e", "aggregation": "count"}},
        "plans": {
            "p": {
                "entitlements": {"f": {"meter": "m"}},
                "prices": [{"type": "unit", "feature": "f", "unit_price": value}],
            }
        },
    }
    assert validator().is_valid(doc) is accepted
    if accepted:
        validate_catalog(doc)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("0.001", True), ("10", True), ("00.5", True), (1, True), ("0", False), ("0.000", False)],
)
def test_a_block_size_is_more_than_zero_for_both(value: object, accepted: bool) -> None:
    topup = {"block_size": value, "price": "5.00"}
    doc = {
        "meters": {"m": {"event_type": "e", "aggregation": "count"}},
        "plans": {
            "p": {"entitlements": {"f": {"meter": "m", "allowance": {"fixed": 1}, "topup": topup}}}
        },
    }
    assert validator().is_valid(doc) is accepted
    if accepted:
        validate_catalog(doc)
    else:
        with pytest.raises(CatalogInvalid, match=r"block_size: must be > 0"):
            validate_catalog(doc)


# --- documents --------------------------------------------------------------------------


def test_the_demo_catalog_fits_the_schema() -> None:
    errors = [str(e) for e in validator().iter_errors(demo_catalog())]
    assert errors == []
    validate_catalog(demo_catalog())


def test_the_reference_has_examples_of_every_price_type_and_aggregation() -> None:
    assert len(EXAMPLES) >= 12
    docs = [yaml.safe_load(param.values[1]) for param in EXAMPLES]
    types = {
        p["type"]
        for d in docs
        for plan in d.get("plans", {}).values()
        for p in plan.get("prices", [])
    }
    assert types == set(model.PRICE_TYPES)
    kinds = {m["aggregation"] for d in docs for m in d.get("meters", {}).values()}
    assert kinds == {"count", "sum", "max", "latest", "unique_count", "gauge", "duration"}


@pytest.mark.parametrize(("lang", "body"), EXAMPLES)
def test_every_example_of_the_reference_is_a_valid_catalog(lang: str, body: str) -> None:
    doc = yaml.safe_load(body) if lang == "yaml" else json.loads(body)
    errors = [f"{e.instance_path}: {e.message}" for e in validator().iter_errors(as_json(doc))]
    assert errors == []
    validate_catalog(doc)


def test_the_reference_policies_are_the_demo_catalogs_own() -> None:
    demo = demo_catalog()
    policies = [body for before, body in blocks("yaml") if before == FROM_DEMO]
    assert len(policies) == 4
    covered: dict[str, set[str]] = {"meters": set(), "plans": set(), "customers": set()}
    for body in policies:
        for section, entries in as_json(yaml.safe_load(body)).items():
            for name, entry in entries.items():
                assert entry == demo[section][name], (section, name)
                covered[section].add(name)
    assert {section: set(demo[section]) - names for section, names in covered.items()} == {
        "meters": set(),
        "plans": {"unlimited"},  # the unlimited plan is no reference policy of its own
        "customers": set(),
    }


def test_the_editor_line_points_at_the_schema_file() -> None:
    first = [body.splitlines()[0] for _, body in blocks("yaml") if body.startswith("# yaml-")]
    assert first == ["# yaml-language-server: $schema=../docs/catalog.schema.json"]


# --- broken catalogs --------------------------------------------------------------------


def broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(demo_catalog())
    change(doc)
    return doc


BROKEN = {
    "an unknown section": lambda d: d.update(extras={}),
    "an unknown meter field": lambda d: d["meters"]["media_minutes"].update(colour="red"),
    "an unknown price type": lambda d: d["plans"]["pro"]["prices"].append(
        {"type": "discount", "amount": "1.00"}
    ),
    "a price without a type": lambda d: d["plans"]["pro"]["prices"].append({"amount": "1.00"}),
    "a field of another price type": lambda d: d["plans"]["pro"]["prices"][0].update(
        feature="managed_media"
    ),
    "a missing price field": lambda d: d["plans"]["connector"]["prices"][0].pop("unit_price"),
    "an unknown aggregation": lambda d: d["meters"]["coedit_sessions"].update(aggregation="avg"),
    "a negative allowance": lambda d: d["plans"]["pro"]["entitlements"]["managed_media"].update(
        allowance={"fixed": -1}
    ),
    "an amount that is no number": lambda d: d["plans"]["pro"]["prices"][0].update(amount="lots"),
    "a bad name": lambda d: d["customers"].update({"-acme": {"plan": "basic"}}),
    "a bad feature name": lambda d: d["plans"]["basic"]["entitlements"].update(
        {"a b": {"meter": "media_minutes"}}
    ),
    "a lower-case currency": lambda d: d["plans"]["pro"].update(currency="usd"),
    "a percent past 100": lambda d: d["plans"]["pro"]["entitlements"]["managed_media"][
        "notify"
    ].update(percent_used=[101]),
    "seats as a boolean": lambda d: d["customers"]["acme"].update(seats=True),
    "too many seats": lambda d: d["customers"]["acme"].update(seats=1_000_000_001),
    "a zero rounding": lambda d: d["meters"]["media_minutes"]["rounding"].update(unit_seconds=0),
    "a filter of mappings": lambda d: d["meters"]["media_minutes"].update(filter={"kind": [{}]}),
}


@pytest.mark.parametrize("change", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_catalog_fails_the_schema_and_the_service(change: Any) -> None:
    doc = broken(change)
    assert not validator().is_valid(doc)
    with pytest.raises(CatalogInvalid):
        validate_catalog(doc)


def test_an_unknown_price_type_is_named_on_type() -> None:
    doc = broken(BROKEN["an unknown price type"])
    [error] = list(validator().iter_errors(doc))
    assert list(error.instance_path) == ["plans", "pro", "prices", 2, "type"]


def test_what_the_service_fills_in_or_reads_leniently_the_schema_allows() -> None:
    doc = {
        "meters": {"m": {"event_type": "e", "aggregation": "count", "filter": {"plan": "paid"}}},
        "plans": {"p": {"entitlements": {"f": {"meter": "m", "allowance": {"fixed": 10}}}}},
        "customers": {"c": {"plan": "p", "billing_anchor": "2026-01-31"}},
    }
    assert validator().is_valid(doc)
    assert validate_catalog(doc).plans["p"].entitlements["f"].enforcement == "hard"


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown`."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_link_of_the_reference_leads_somewhere() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", REFERENCE)
    assert len(links) > 15
    for link in links:
        page, _, anchor = link.partition("#")
        target = REFERENCE if not page else (DOCS / page).read_text(encoding="utf-8")
        if anchor:
            assert anchor in anchors(target), link


def reference_plans() -> dict[str, Any]:
    """Every plan of the examples of docs/catalog.md, by name, as the service reads it."""
    plans: dict[str, Any] = {}
    for _, body in blocks("yaml"):
        plans.update(validate_catalog(yaml.safe_load(body)).plans)
    return plans


@pytest.mark.parametrize(
    ("plan", "feature", "used", "overage", "stated"),
    [
        ("graduated", "api_calls", "15", "0", "97.50"),
        ("volume", "api_calls", "15", "0", "90.00"),
        ("per_hundred", "api_calls", "1050", "0", "55.00"),
        ("hundred_free", "api_calls", "1550", "0", "20.00"),
        ("connector", "audio_connector", "57", "0", "0.29"),
        ("pro", "managed_media", "30", "5", "100.00"),
    ],
)
def test_the_amounts_the_reference_states_are_what_invoices_charge(
    plan: str, feature: str, used: str, overage: str, stated: str
) -> None:
    assert f"**{stated}**" in REFERENCE
    usage = {feature: FeatureUsage(feature, "unit", Decimal(used), Decimal(overage))}
    lines = usage_lines(plan, reference_plans()[plan], usage)
    assert str(sum(line.amount for line in lines)) == stated


def test_the_fees_the_reference_states() -> None:
    plans = reference_plans()
    assert str(plan_fee(plans["pro"], 0)) == "299.00"
    assert "299.00 + (30 − 25) × 20.00 = 299.00 + **100.00** overage\n  = 399.00" in REFERENCE
    assert str(plan_fee(plans["starter"], 0)) == "19.00"


def test_the_auto_upgrade_proration_the_reference_states() -> None:
    plans = reference_plans()
    change = PlanChange(
        datetime(2026, 3, 11, tzinfo=UTC), "sessions_100k", "sessions_200k", "auto", Decimal(2) / 3
    )
    old, new = plan_fee(plans["sessions_100k"], 0), plan_fee(plans["sessions_200k"], 0)
    line = proration_line(change, old, new, "USD")
    assert line is not None and str(line.amount) == "266.67"
    assert str(old + line.amount) == "766.67"
    assert "**266.67**, 766.67 in all" in REFERENCE
