"""The catalog: meters, plans and customers as one validated, immutable document.

Validation reports every mistake at once, each as ``path: reason`` (for example
``plans.basic.entitlements.media.meter: unknown meter 'x'``), so an operator can fix a
catalog in one pass; a catalog with any error is refused whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Aggregation",
    "Allowance",
    "Catalog",
    "CatalogInvalid",
    "CustomerSpec",
    "Enforcement",
    "EntitlementSpec",
    "FlatPrice",
    "GraduatedPrice",
    "MeterSpec",
    "Notify",
    "OveragePrice",
    "PackagePrice",
    "PerSeatPrice",
    "PlanSpec",
    "Price",
    "Rounding",
    "Tier",
    "Topup",
    "UnitPrice",
    "catalog_to_json",
    "load_yaml",
    "validate_catalog",
]

# A location inside the catalog document, as Pydantic reports it: ("plans", "pro", "prices", 1).
Loc = tuple[str | int, ...]
# One broken rule: where, and why.
Problem = tuple[Loc, str]

Aggregation = Literal["count", "sum", "max", "latest", "unique_count", "gauge", "duration"]
Enforcement = Literal["hard", "soft", "overage", "none"]
Period = Literal["calendar_month", "billing_cycle"]
Recipients = Literal["admins", "owner", "members"]

# Matched whole (`fullmatch`): with `match`, "$" also matches before a final line end.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# No control character (C0, DEL, C1) either: an address goes into mail headers.
_EMAIL_PATTERN = re.compile(r"[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+")
_RULES_ERROR = "catalog_rules"


# --- value types ----------------------------------------------------------------------


def _check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits and _ . : -, "
            "starting with a letter or digit, at most 128 characters"
        )
    return value


def _decimal_from_float_text(value: object) -> object:
    # A float such as 0.1 is not exactly 0.1; its shortest repr is what the author wrote.
    if isinstance(value, float):
        return str(value)
    return value


def _reject_bool(value: object) -> object:
    # bool is an int subclass, so `seats: true` would otherwise silently mean one seat.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _check_email(value: str) -> str:
    if not _EMAIL_PATTERN.fullmatch(value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


def _check_filter_value(value: object) -> object:
    # Pydantic turns a ValueError, not a TypeError, into a validation error.
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"must be a string, number or boolean (got {_describe(value)})")  # noqa: TRY004
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Integer = Annotated[int, BeforeValidator(_reject_bool)]
Quantity = Annotated[Decimal, BeforeValidator(_decimal_from_float_text)]
Money = Annotated[Decimal, BeforeValidator(_decimal_from_float_text), Field(ge=0)]
Email = Annotated[str, AfterValidator(_check_email)]
FilterValue = Annotated[str | int | float | bool, BeforeValidator(_check_filter_value)]


def _raise_problems(problems: list[Problem]) -> None:
    """Raise every broken rule of one model as one Pydantic error.

    Pydantic keeps one error per validator; the problems travel in the error's context so
    that `validate_catalog` can report each at its own field.
    """
    if problems:
        summary = "; ".join(f"{_render_loc(loc) or '(model)'}: {reason}" for loc, reason in problems)
        raise PydanticCustomError(_RULES_ERROR, "{summary}", {"summary": summary, "problems": problems})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- meters ---------------------------------------------------------------------------

# Which aggregations need, or may carry, which optional meter fields.
_NEEDS_VALUE = {"sum", "max", "latest", "unique_count"}
_DURATION_ONLY = ("rounding", "merge_property", "idle_timeout")


# What a duration meter's `unit` may be, in seconds.
DURATION_UNITS = {
    "s": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
}


class Rounding(_Spec):
    unit_seconds: Integer = Field(gt=0)
    mode: Literal["ceil", "floor", "nearest"] = "ceil"


def _check_event_type(value: str) -> str:
    # As an event's own type: no event could match another, and PostgreSQL holds no NUL.
    if any(ch < "\x20" for ch in value):
        raise ValueError(f"must not contain control characters (U+0000 to U+001F) (got {value!r})")
    return value


class MeterSpec(_Spec):
    event_type: Annotated[str, AfterValidator(_check_event_type)] = Field(min_length=1)
    aggregation: Aggregation
    value_property: str | None = None
    delta_property: str | None = None
    stream_property: str | None = None
    merge_property: str | None = None
    filter: dict[str, list[FilterValue]] = {}
    rounding: Rounding | None = None
    idle_timeout: Integer | None = Field(default=None, gt=0)
    unit: str = Field(default="unit", min_length=1)

    @field_validator("filter", mode="before")
    @classmethod
    def _scalar_filter_is_one_value_list(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {key: v if isinstance(v, list) else [v] for key, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_aggregation_fields(self) -> MeterSpec:
        _raise_problems(self._problems())
        return self

    def _problems(self) -> list[Problem]:
        kind = self.aggregation
        problems: list[Problem] = []
        if kind in _NEEDS_VALUE and self.value_property is None:
            problems.append((("value_property",), f"required for aggregation {kind!r}"))
        if kind == "gauge" and self.value_property is None and self.delta_property is None:
            problems.append((("value_property",), "aggregation 'gauge' needs value_property or delta_property"))
        if kind == "duration" and self.stream_property is None:
            problems.append((("stream_property",), "required for aggregation 'duration'"))
        if kind == "duration" and self.unit not in DURATION_UNITS:
            problems.append((("unit",), f"a duration meter counts seconds, minutes or hours (got {self.unit!r})"))
        if kind != "duration":
            problems += [
                ((field,), f"only allowed for aggregation 'duration' (got {kind!r})")
                for field in _DURATION_ONLY
                if getattr(self, field) is not None
            ]
        if kind != "gauge" and self.delta_property is not None:
            problems.append((("delta_property",), f"only allowed for aggregation 'gauge' (got {kind!r})"))
        return problems

    def matches(self, data: Mapping[str, Any]) -> bool:
        """True when the event data passes every filter (no filter: every event)."""
        return all(
            key in data and any(_same_value(data[key], allowed) for allowed in values)
            for key, values in self.filter.items()
        )


def _same_value(actual: object, allowed: object) -> bool:
    # JSON `true` is not the number 1, although Python says True == 1.
    if isinstance(actual, bool) or isinstance(allowed, bool):
        return type(actual) is type(allowed) and actual == allowed
    return actual == allowed


# --- entitlements ---------------------------------------------------------------------


class Allowance(_Spec):
    fixed: Quantity | None = Field(default=None, ge=0)
    per_seat: Quantity | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Allowance:
        if (self.fixed is None) == (self.per_seat is None):
            _raise_problems([((), "needs exactly one of fixed, per_seat")])
        return self


class Notify(_Spec):
    percent_used: list[Annotated[Integer, Field(ge=1, le=100)]] = []
    percent_remaining: list[Annotated[Integer, Field(ge=0, le=99)]] = []
    exhausted: bool = False
    recipients: Recipients = "admins"

    @field_validator("percent_used", "percent_remaining")
    @classmethod
    def _sorted_unique(cls, values: list[int]) -> list[int]:
        return sorted(set(values))


class Topup(_Spec):
    block_size: Quantity = Field(gt=0)
    price: Money


class EntitlementSpec(_Spec):
    meter: str
    allowance: Allowance | None = None
    period: Period = "calendar_month"
    # Always set after validation: absent means "hard" with an allowance, "none" without.
    enforcement: Enforcement
    slack: Quantity | None = Field(default=None, ge=0)
    overage_limit: Quantity | None = Field(default=None, ge=0)
    notify: Notify | None = None
    topup: Topup | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        if filled.get("enforcement") is None:
            filled["enforcement"] = "none" if filled.get("allowance") is None else "hard"
        if filled["enforcement"] == "soft" and filled.get("slack") is None:
            filled["slack"] = Decimal(0)
        return filled

    @model_validator(mode="after")
    def _check_enforcement(self) -> EntitlementSpec:
        _raise_problems(self._problems())
        return self

    def _problems(self) -> list[Problem]:
        mode = self.enforcement
        problems: list[Problem] = []
        if self.allowance is None and mode != "none":
            problems.append((("enforcement",), f"enforcement {mode!r} needs an allowance"))
        if self.slack is not None and mode != "soft":
            problems.append((("slack",), f"only allowed with enforcement 'soft' (got {mode!r})"))
        if self.overage_limit is not None and mode != "overage":
            problems.append((("overage_limit",), f"only allowed with enforcement 'overage' (got {mode!r})"))
        if self.allowance is None:
            problems += [
                ((field,), "needs an allowance") for field in ("notify", "topup") if getattr(self, field) is not None
            ]
        return problems


# --- prices ---------------------------------------------------------------------------


class FlatPrice(_Spec):
    type: Literal["flat"]
    amount: Money


class PerSeatPrice(_Spec):
    type: Literal["per_seat"]
    amount: Money


class UnitPrice(_Spec):
    type: Literal["unit"]
    feature: str
    unit_price: Money


class OveragePrice(_Spec):
    type: Literal["overage"]
    feature: str
    unit_price: Money


class Tier(_Spec):
    up_to: Quantity | None = Field(default=None, gt=0)
    unit_price: Money


class GraduatedPrice(_Spec):
    type: Literal["graduated"]
    feature: str
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_tiers(self) -> GraduatedPrice:
        _raise_problems(self._problems())
        return self

    def _problems(self) -> list[Problem]:
        problems: list[Problem] = []
        last = len(self.tiers) - 1
        previous: Decimal | None = None
        for index, tier in enumerate(self.tiers):
            loc: Loc = ("tiers", index, "up_to")
            if tier.up_to is None:
                if index != last:
                    problems.append((loc, "only the last tier may be unbounded"))
                continue
            if previous is not None and tier.up_to <= previous:
                problems.append((loc, f"must be greater than the previous tier's {previous}"))
            previous = tier.up_to
        return problems


class PackagePrice(_Spec):
    type: Literal["package"]
    feature: str


Price = Annotated[
    FlatPrice | PerSeatPrice | UnitPrice | OveragePrice | GraduatedPrice | PackagePrice,
    Field(discriminator="type"),
]
PRICE_TYPES = ("flat", "per_seat", "unit", "overage", "graduated", "package")


# --- plans, customers, catalog --------------------------------------------------------


class PlanSpec(_Spec):
    entitlements: dict[Name, EntitlementSpec] = {}
    prices: list[Price] = []
    next_plan: str | None = None
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class CustomerSpec(_Spec):
    plan: str
    seats: Integer = Field(default=0, ge=0)
    admins: list[Email] = []
    owner: Email | None = None
    members: list[Email] = []
    timezone: str = "UTC"
    billing_anchor: date | None = None
    auto_upgrade: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Catalog(_Spec):
    meters: dict[Name, MeterSpec] = {}
    plans: dict[Name, PlanSpec] = {}
    customers: dict[Name, CustomerSpec] = {}

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        _raise_problems(_reference_problems(set(self.meters), set(self.plans), self.plans, self.customers))
        return self

    def plan_features(self, plan: str) -> dict[str, EntitlementSpec]:
        return self.plans[plan].entitlements

    def entitlement(self, customer_key: str, feature: str) -> tuple[CustomerSpec, PlanSpec, EntitlementSpec]:
        """The customer, its plan and the plan's entitlement for `feature`; KeyError if any is missing."""
        customer = self.customers.get(customer_key)
        if customer is None:
            raise KeyError(f"unknown customer {customer_key!r}")
        plan = self.plans[customer.plan]
        spec = plan.entitlements.get(feature)
        if spec is None:
            raise KeyError(f"plan {customer.plan!r} of customer {customer_key!r} has no feature {feature!r}")
        return customer, plan, spec


# --- cross references -----------------------------------------------------------------


def _reference_problems(
    meter_names: set[str],
    plan_names: set[str],
    plans: Mapping[str, PlanSpec],
    customers: Mapping[str, CustomerSpec],
) -> list[Problem]:
    """Broken references among the parsed parts.

    Existence is checked against every name in the document, parsed or not, so a meter
    with a type error is not also reported as missing by each plan using it.
    """
    problems: list[Problem] = []
    for name, plan in plans.items():
        problems += _plan_reference_problems(name, plan, meter_names, plan_names)
    problems += _next_plan_cycles(plans)
    for key, customer in customers.items():
        if customer.plan not in plan_names:
            problems.append((("customers", key, "plan"), f"unknown plan {customer.plan!r}"))
    return problems


def _plan_reference_problems(name: str, plan: PlanSpec, meter_names: set[str], plan_names: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for feature, spec in plan.entitlements.items():
        if spec.meter not in meter_names:
            problems.append((("plans", name, "entitlements", feature, "meter"), f"unknown meter {spec.meter!r}"))
    features = ", ".join(plan.entitlements) or "no features"
    for index, price in enumerate(plan.prices):
        loc: Loc = ("plans", name, "prices", index, "feature")
        if isinstance(price, (FlatPrice, PerSeatPrice)):
            continue
        priced = plan.entitlements.get(price.feature)
        if priced is None:
            problems.append((loc, f"unknown feature {price.feature!r} (plan {name} has: {features})"))
        elif isinstance(price, PackagePrice) and priced.topup is None:
            problems.append((loc, f"feature {price.feature!r} has no topup to sell as a package"))
    if plan.next_plan == name:
        problems.append((("plans", name, "next_plan"), "a plan cannot be its own next_plan"))
    elif plan.next_plan is not None and plan.next_plan not in plan_names:
        problems.append((("plans", name, "next_plan"), f"unknown plan {plan.next_plan!r}"))
    return problems


def _next_plan_cycles(plans: Mapping[str, PlanSpec]) -> list[Problem]:
    """One problem per loop of two or more plans in the upgrade ladder.

    A self-loop is reported on its own by `_plan_reference_problems`.
    """
    problems: list[Problem] = []
    walked: set[str] = set()
    for start in sorted(plans):
        path: list[str] = []
        current: str | None = start
        while current is not None and current in plans and current not in walked:
            walked.add(current)
            path.append(current)
            current = plans[current].next_plan
        # Only a walk that ends on its own path has found a new loop; ending on an
        # earlier walk means joining a ladder (or loop) already reported.
        if current in path and current != path[-1]:
            loop = path[path.index(current) :]
            chain = " -> ".join([*loop, loop[0]])
            problems.append((("plans", loop[0], "next_plan"), f"next_plan chain loops: {chain}"))
    return problems


# --- errors ---------------------------------------------------------------------------


class CatalogInvalid(Exception):
    """A catalog refused whole; `errors` lists every problem as ``path: reason``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _render_loc(loc: Iterable[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _quoted_choices(expected: str) -> str:
    # Pydantic renders choices as "'a', 'b' or 'c'"; people read "a, b, c".
    return ", ".join(re.findall(r"'([^']*)'", expected))


# Reasons for Pydantic error types, followed by "(got <input>)".
_TYPE_REASONS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "float_type": "must be a number",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "date_type": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "must be a date without a time",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _reason(error: Mapping[str, Any]) -> str:
    """A short human reason for one Pydantic error."""
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    got = _describe(error.get("input"))
    if kind in ("missing", "union_tag_not_found"):
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        return f"must be one of {_quoted_choices(ctx['expected'])} (got {got})"
    if kind == "union_tag_invalid":
        return f"must be one of {_quoted_choices(ctx['expected_tags'])} (got {ctx['tag']!r})"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    if kind in _TYPE_REASONS:
        return f"{_TYPE_REASONS[kind]} (got {got})"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {next(iter(ctx.values()))} (got {got})"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {got})"
    message: str = error["msg"]
    return f"{message[:1].lower()}{message[1:]} (got {got})"


def _clean_loc(loc: Loc) -> Loc:
    """Drop the parts of a Pydantic location that are not in the document.

    A discriminated union adds the chosen tag (``prices.1.flat.amount``) and a bad dict
    key adds ``[key]``; neither is something the author wrote.
    """
    kept: list[str | int] = []
    for part in loc:
        if part == "[key]":
            continue
        after_price_index = len(kept) >= 2 and kept[-2] == "prices" and isinstance(kept[-1], int)
        if after_price_index and part in PRICE_TYPES:
            continue
        kept.append(part)
    return tuple(kept)


def _problems_from(error: ValidationError, prefix: Loc) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = prefix + _clean_loc(tuple(item["loc"]))
        if item["type"] == _RULES_ERROR:
            problems += [(loc + rule_loc, reason) for rule_loc, reason in item["ctx"]["problems"]]
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append((loc + ("type",), _reason(item)))
        else:
            problems.append((loc, _reason(item)))
    return problems


# --- entry points ---------------------------------------------------------------------

_SECTIONS: dict[str, TypeAdapter[Any]] = {
    "meters": TypeAdapter(MeterSpec),
    "plans": TypeAdapter(PlanSpec),
    "customers": TypeAdapter(CustomerSpec),
}


def _parse_section(section: str, raw: object) -> tuple[dict[str, Any], set[str], list[Problem]]:
    """Validate each entry of one section on its own, so one bad entry hides no other."""
    if raw is None:
        return {}, set(), []
    if not isinstance(raw, Mapping):
        return {}, set(), [((section,), f"must be a mapping of names (got {_describe(raw)})")]
    adapter = _SECTIONS[section]
    parsed: dict[str, Any] = {}
    names: set[str] = set()
    problems: list[Problem] = []
    for name, body in raw.items():
        if not isinstance(name, str):
            problems.append(((section, str(name)), f"name must be a string (got {_describe(name)})"))
            continue
        names.add(name)
        try:
            _check_name(name)
        except ValueError as bad:
            problems.append(((section, name), str(bad)))
        try:
            parsed[name] = adapter.validate_python(body)
        except ValidationError as error:
            problems += _problems_from(error, (section, name))
    return parsed, names, problems


def validate_catalog(doc: object) -> Catalog:
    """The catalog in `doc` (parsed YAML or JSON), or CatalogInvalid listing every error."""
    if not isinstance(doc, Mapping):
        raise CatalogInvalid([f"catalog: must be a mapping with meters, plans and customers (got {_describe(doc)})"])
    problems: list[Problem] = [((str(key),), "unknown field") for key in doc if key not in _SECTIONS]
    meters, meter_names, meter_problems = _parse_section("meters", doc.get("meters"))
    plans, plan_names, plan_problems = _parse_section("plans", doc.get("plans"))
    customers, _, customer_problems = _parse_section("customers", doc.get("customers"))
    problems += meter_problems + plan_problems + customer_problems
    problems += _reference_problems(meter_names, plan_names, plans, customers)
    if problems:
        raise CatalogInvalid([f"{_render_loc(loc)}: {reason}" for loc, reason in problems])
    return Catalog(meters=meters, plans=plans, customers=customers)


def load_yaml(text: str) -> object:
    """The YAML document in `text`; a syntax error becomes CatalogInvalid with its position."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if mark is None:
            raise CatalogInvalid([f"yaml: {problem}"]) from error
        raise CatalogInvalid([f"yaml: line {mark.line + 1}, column {mark.column + 1}: {problem}"]) from error
    except yaml.YAMLError as error:
        raise CatalogInvalid([f"yaml: {error}"]) from error


def catalog_to_json(catalog: Catalog) -> dict[str, Any]:
    """The catalog as plain JSON values (Decimals as strings, dates ISO); `validate_catalog` reads it back."""
    return catalog.model_dump(mode="json", exclude_none=True)
