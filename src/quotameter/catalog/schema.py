"""The catalog's JSON Schema, for editors, and the field tables of docs/catalog.md.

`catalog_schema()` is generated from the Pydantic models of `quotameter.catalog.model`, then
made into plain JSON Schema (draft 2020-12, using only keywords draft-07 editors also know):

- a decimal (`Decimal` fields: amounts, allowances, sizes) is a number or a string holding a
  plain decimal number; Pydantic's `ge`/`gt` (not JSON Schema) become `minimum` or
  `exclusiveMinimum` on the number and a pattern on the string;
- names (of meters, plans, features, customers) keep their pattern, as `propertyNames`;
- `enforcement` may be left out (the model fills it in), a meter's `filter` may give one
  value instead of a list, as the models read them;
- each price is chosen by its `type` (`if`/`then` per type, so an editor reports the errors of
  that type only, or that the type is unknown).

The schema checks the shape of a catalog; the rules across fields and references (an
unknown meter, a second unbounded tier, an amount finer than its currency) are checked by
`validate_catalog` when a catalog is applied.

    python -m quotameter.catalog.schema > docs/catalog.schema.json
    python -m quotameter.catalog.schema --write   # docs/catalog.schema.json and the tables
                                                  # of docs/catalog.md, from the current dir
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from quotameter.catalog.model import MAX_SEATS, MAX_SECONDS, NAME_PATTERN, PRICE_TYPES, Catalog

__all__ = [
    "DECIMAL_PATTERN",
    "POSITIVE_DECIMAL_PATTERN",
    "SCHEMA_ID",
    "catalog_schema",
    "field_tables",
    "schema_text",
]

SCHEMA_ID = "https://quotameter.dev/catalog.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# A decimal written as a string: digits, then optionally a point and digits ("5.00", "0.005").
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
# The same, not zero: a non-zero digit before the point, or after it.
POSITIVE_DECIMAL_PATTERN = r"^(0*[1-9][0-9]*(\.[0-9]+)?|0+\.[0-9]*[1-9][0-9]*)$"
# Pydantic's bounds, outside the decimal branches: JSON Schema's names for them.
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_NUMBER_OR_STRING = [{"type": "number"}, {"type": "string"}]
# Maps keyed by a name (meters, plans, customers, a plan's features).
_NAMED_MAPS = {
    "Catalog": ("meters", "plans", "customers"),
    "PlanSpec": ("entitlements",),
}
# Integers with an upper bound checked in an AfterValidator, which Pydantic does not show.
_MAXIMA = {
    ("CustomerSpec", "seats"): MAX_SEATS,
    ("Rounding", "unit_seconds"): MAX_SECONDS,
    ("MeterSpec", "idle_timeout"): MAX_SECONDS,
}
_PRICE_DEFS = {
    "flat": "FlatPrice",
    "per_seat": "PerSeatPrice",
    "unit": "UnitPrice",
    "overage": "OveragePrice",
    "graduated": "GraduatedPrice",
    "volume": "VolumePrice",
    "package": "PackagePrice",
    "topup": "TopupPrice",
    "minimum": "MinimumPrice",
}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside `node`, `node` first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _fix_decimal(node: dict[str, Any]) -> None:
    """A Decimal's `anyOf [number, string]` with `ge`/`gt` beside it: the bound on each branch."""
    if node.get("anyOf") != _NUMBER_OR_STRING:
        return
    if node.pop("gt", None) == 0:
        number = {"type": "number", "exclusiveMinimum": 0}
        string = {"type": "string", "pattern": POSITIVE_DECIMAL_PATTERN}
    elif node.pop("ge", None) == 0:
        number = {"type": "number", "minimum": 0}
        string = {"type": "string", "pattern": DECIMAL_PATTERN}
    else:  # every decimal of the catalog has a lower bound of 0
        raise AssertionError(f"a decimal without a bound of 0: {node}")
    node["anyOf"] = [number, string]


def _flatten(node: dict[str, Any]) -> None:
    """`anyOf [anyOf [a, b], c]` (an optional decimal) as `anyOf [a, b, c]`."""
    if "anyOf" in node:
        node["anyOf"] = [
            item
            for branch in node["anyOf"]
            for item in (branch["anyOf"] if branch.keys() == {"anyOf"} else [branch])
        ]


def _fix_bounds(node: dict[str, Any]) -> None:
    for pydantic_name, name in _BOUNDS.items():
        if pydantic_name in node:
            node[name] = node.pop(pydantic_name)


def _property(schema: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    """The schema of `model.field`, the branch that is not null when it is optional."""
    prop: dict[str, Any] = schema["$defs"][model]["properties"][field]
    branches: list[dict[str, Any]] = prop.get("anyOf", [prop])
    return next(branch for branch in branches if branch.get("type") != "null")


def _prices_by_type(schema: dict[str, Any]) -> None:
    items = schema["$defs"]["PlanSpec"]["properties"]["prices"]["items"]
    refs = {ref["$ref"].rsplit("/", 1)[1] for ref in items["oneOf"]}
    if refs != set(_PRICE_DEFS.values()) or tuple(_PRICE_DEFS) != PRICE_TYPES:
        raise AssertionError(f"price types changed: {sorted(refs)}")
    schema["$defs"]["PlanSpec"]["properties"]["prices"]["items"] = {
        "type": "object",
        "description": "one price; its other fields depend on its type",
        "required": ["type"],
        "properties": {"type": {"enum": list(PRICE_TYPES)}},
        "allOf": [
            {
                "if": {"required": ["type"], "properties": {"type": {"const": kind}}},
                "then": {"$ref": f"#/$defs/{name}"},
            }
            for kind, name in _PRICE_DEFS.items()
        ],
    }


def _build() -> dict[str, Any]:
    schema = Catalog.model_json_schema()
    for node in _walk(schema):
        _fix_decimal(node)
        _fix_bounds(node)
    for node in _walk(schema):
        _flatten(node)
    defs = schema["$defs"]
    name = {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}
    for model, fields in _NAMED_MAPS.items():
        for field in fields:
            spec = schema if model == "Catalog" else defs[model]
            spec["properties"][field]["propertyNames"] = name
    for (model, field), maximum in _MAXIMA.items():
        _property(schema, model, field)["maximum"] = maximum
    # The model fills `enforcement` in when it is left out (see EntitlementSpec._prepare).
    defs["EntitlementSpec"]["required"].remove("enforcement")
    # One filter value stands for a list of one (see MeterSpec's filter validator).
    values = defs["MeterSpec"]["properties"]["filter"]["additionalProperties"]
    defs["MeterSpec"]["properties"]["filter"]["additionalProperties"] = {
        "anyOf": [values, *values["items"]["anyOf"]]
    }
    _prices_by_type(schema)
    return {
        **schema,
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "quotameter catalog",
        "description": "Meters, plans and customers, as applied by `quotameter apply` (YAML) "
        "and PUT /v1/catalog (JSON); the reference is docs/catalog.md. Applying a catalog also "
        "checks the rules across fields and the references between its parts.",
    }


@cache
def _cached() -> dict[str, Any]:
    return _build()


def catalog_schema() -> dict[str, Any]:
    """The catalog's JSON Schema (a fresh copy: the caller may change it)."""
    return copy.deepcopy(_cached())


def schema_text() -> str:
    """The schema as written to docs/catalog.schema.json: sorted keys, 2-space indent."""
    return json.dumps(catalog_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- the field tables of docs/catalog.md -----------------------------------------------

_TABLE = re.compile(
    r"(<!-- fields: (?P<model>\w+) -->\n)(?P<body>.*?)(<!-- end of fields -->)", re.DOTALL
)


def _inline(value: Any) -> str:
    """A value as written in a YAML flow (JSON is YAML)."""
    return "`" + json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) + "`"


def _type_of(node: dict[str, Any], sections: dict[str, str]) -> str:
    """The type of a field, in words; a model links to the section that has its table."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return f"mapping ({sections.get(name, name)})"
    branches = node.get("anyOf")
    if branches is not None:
        kinds = [branch for branch in branches if branch.get("type") != "null"]
        if kinds[0].get("type") == "array" and kinds[0]["items"] == {"anyOf": kinds[1:]}:
            return f"{_type_of(kinds[0]['items'], sections)}, or a list of them"
        if [kind.get("type") for kind in kinds] == ["number", "string"]:
            return "decimal > 0" if "exclusiveMinimum" in kinds[0] else "decimal ≥ 0"
        names = [_type_of(kind, sections) for kind in kinds]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    if "const" in node:
        return _inline(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(f"`{value}`" for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type_of(node['items'], sections)}"
    if kind == "object" and "additionalProperties" not in node:
        return "mapping (a price, by its `type`: [Prices](#prices))"
    if kind == "object":
        keys = "name" if "propertyNames" in node else "string"
        return f"mapping of {keys} to {_type_of(node['additionalProperties'], sections)}"
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum"))
        if low is None:
            return "integer"
        above = "≥" if "minimum" in node else ">"
        high = f" and ≤ {node['maximum']:,}" if "maximum" in node else ""
        return f"integer {above} {low}{high}"
    if kind == "string" and node.get("format") == "date":
        return "date (YYYY-MM-DD)"
    if kind == "string" and "pattern" in node:
        return f"string matching `{node['pattern']}`"
    return str(kind)


def _default_of(model: dict[str, Any], field: str, node: dict[str, Any]) -> str:
    if field in model.get("required", []):
        return "required"
    if "default" not in node:
        return "see the description"
    return "none" if node["default"] is None else _inline(node["default"])


def _table(schema: dict[str, Any], model_name: str, sections: dict[str, str]) -> str:
    model = schema["$defs"][model_name]
    rows = ["| field | type | default | example | what it is |", "| --- | --- | --- | --- | --- |"]
    for field, node in model["properties"].items():
        example = _inline(node["examples"][0]) if node.get("examples") else ""
        description = node.get("description", "").replace("|", "\\|")
        cells = [
            f"`{field}`",
            _type_of(node, sections),
            _default_of(model, field, node),
            example,
            description,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _sections(markdown: str) -> dict[str, str]:
    """Each model with a table, and a link to the section its table is in (the heading
    before it, linked as GitHub names a heading's anchor)."""
    links: dict[str, str] = {}
    heading = ""
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif (table := re.fullmatch(r"<!-- fields: (\w+) -->", line)) and heading:
            anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
            links.setdefault(table[1], f"[{heading}](#{anchor})")
    return links


def field_tables(markdown: str) -> str:
    """`markdown` with each table between `<!-- fields: Model -->` and
    `<!-- end of fields -->` generated again from the schema."""
    schema = catalog_schema()
    schema["$defs"]["Catalog"] = schema
    sections = _sections(markdown)

    def regenerate(match: re.Match[str]) -> str:
        return match[1] + _table(schema, match["model"], sections) + match[4]

    return _TABLE.sub(regenerate, markdown)


# --- the command ----------------------------------------------------------------------------


def main(argv: list[str], write: Callable[[str], object] = sys.stdout.write) -> int:
    if argv in ([], ["--write"]):
        if not argv:
            write(schema_text())
            return 0
        docs = Path("docs")
        (docs / "catalog.schema.json").write_text(schema_text(), encoding="utf-8")
        reference = docs / "catalog.md"
        reference.write_text(field_tables(reference.read_text(encoding="utf-8")), encoding="utf-8")
        write(f"wrote {docs / 'catalog.schema.json'} and the field tables of {reference}\n")
        return 0
    write("usage: python -m quotameter.catalog.schema [--write]\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
