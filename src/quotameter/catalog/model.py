"""The catalog: meters, plans and customers as one validated, immutable document.

Validation reports every mistake at once, each as ``path: reason`` (for example
``plans.basic.entitlements.media.meter: unknown meter 'x'``), so an operator can fix a
catalog in one pass; a catalog with any error is refused whole. "At once" holds at every
level: a field of the wrong type does not hide a rule across fields of the same spec, nor a
reference (to a meter, plan or feature) anywhere in the document.

Money and quantities are bounded where they are written: finite, below 10^15 and with at
most 12 decimal places (what NUMERIC(38, 12) keeps and invoice arithmetic multiplies
exactly); an amount charged as it stands (a flat or per-seat fee, a top-up block's price)
has at most its currency's places, so no invoice rounds what the catalog says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from quotameter.decimals import LARGEST, PLACES, decimal_places
from quotameter.money import minor_digits

__all__ = [
    "Aggregation",
    "Allowance",
    "Catalog",
    "CatalogDiff",
    "CatalogInvalid",
    "Changes",
    "CustomerSpec",
    "Enforcement",
    "EntitlementSpec",
    "FlatPrice",
    "GraduatedPrice",
    "MeterSpec",
    "MinimumPrice",
    "Notify",
    "OveragePrice",
    "PackagePrice",
    "PerSeatPrice",
    "PlanSpec",
    "Price",
    "Rounding",
    "Tier",
    "Topup",
    "TopupPrice",
    "UnitPrice",
    "VolumePrice",
    "catalog_to_json",
    "diff",
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
# Validation context of a document read back from the database (see `validate_catalog`).
_STORED = "stored"

MAX_SEATS = 1_000_000_000  # as the API takes them: within the 32-bit column that keeps seat history
MAX_SECONDS = 366 * 86_400  # a rounding unit or idle timeout longer than a year means a mistake


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


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_STORED))


def _within_bounds(value: Decimal, info: ValidationInfo) -> Decimal:
    # A catalog stored before the bounds were checked still loads; only new ones are held to them.
    if _stored(info):
        return value
    if abs(value) >= LARGEST:
        raise ValueError(f"must be less than 10^15 (got {value})")
    if decimal_places(value) > PLACES:
        raise ValueError(f"must have at most {PLACES} decimal places (got {value})")
    return value


def _at_most(limit: int) -> AfterValidator:
    def check(value: int, info: ValidationInfo) -> int:
        if value > limit and not _stored(info):
            raise ValueError(f"must be <= {limit:,} (got {value})")
        return value

    return AfterValidator(check)


def _check_filter_value(value: object) -> object:
    # Pydantic turns a ValueError, not a TypeError, into a validation error.
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"must be a string, number or boolean (got {_describe(value)})")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Integer = Annotated[int, BeforeValidator(_reject_bool)]
# The sign is checked before the bounds, so that -1 is "must be >= 0" rather than out of range.
Quantity = Annotated[
    Decimal, BeforeValidator(_decimal_from_float_text), Field(ge=0), AfterValidator(_within_bounds)
]
PositiveQuantity = Annotated[
    Decimal, BeforeValidator(_decimal_from_float_text), Field(gt=0), AfterValidator(_within_bounds)
]
Money = Quantity
Seconds = Annotated[Integer, _at_most(MAX_SECONDS)]
Email = Annotated[str, AfterValidator(_check_email)]
FilterValue = Annotated[str | int | float | bool, BeforeValidator(_check_filter_value)]


def _raise_problems(problems: list[Problem]) -> None:
    """Raise every broken rule of one model as one Pydantic error.

    Pydantic keeps one error per validator; the problems travel in the error's context so
    that `validate_catalog` can report each at its own field.
    """
    if problems:
        summary = "; ".join(
            f"{_render_loc(loc) or '(model)'}: {reason}" for loc, reason in problems
        )
        raise PydanticCustomError(
            _RULES_ERROR, "{summary}", {"summary": summary, "problems": problems}
        )


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Broken:
    """The value of a field that failed its own validation."""

    def __repr__(self) -> str:
        return "BROKEN"


# Rules read it as "given, value unknown": a rule that needs the value is skipped.
BROKEN: Any = _Broken()


class _Ruled(_Spec):
    """A spec with rules across its fields (`_problems`), checked also when some fields are
    wrong: the rules then see each broken field as BROKEN, and both kinds are reported."""

    def _problems(self) -> list[Problem]:
        return []

    @classmethod
    def _prepare(cls, data: Any) -> Any:
        """Defaults that depend on other fields, filled before validation."""
        return data

    @classmethod
    def _partial(
        cls, data: Mapping[str, Any], broken: set[str | int], info: ValidationInfo
    ) -> Self:
        """The spec as far as it is valid: the fields as given, BROKEN where they failed."""
        values = {name: data[name] for name in cls.model_fields if name in data}
        values |= {name: BROKEN for name in broken if name in cls.model_fields}
        return cls.model_construct(**values)

    @model_validator(mode="wrap")
    @classmethod
    def _with_rules(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        data = cls._prepare(data)
        try:
            spec = handler(data)
        except ValidationError as error:
            if not isinstance(data, Mapping):
                raise
            problems = _problems_from(error, ())
            partial = cls._partial(data, {loc[0] for loc, _ in problems if loc}, info)
            # A value too odd for the rules: its field error says it.
            with suppress(AttributeError, TypeError, KeyError):
                problems += partial._problems()
            _raise_problems(problems)
            raise
        _raise_problems(spec._problems())
        return spec


def _each(
    adapter: TypeAdapter[Any],
    raw: object,
    info: ValidationInfo,
    container: type[list[Any] | dict[Any, Any]],
) -> object:
    """The items of a list (or mapping) validated one by one, BROKEN where one fails, for
    rules that look at several items; BROKEN as a whole when `raw` is not that container."""

    def one(item: object) -> object:
        try:
            return adapter.validate_python(item, context=info.context)
        except ValidationError:
            return BROKEN

    if container is list and isinstance(raw, list):
        return [one(item) for item in raw]
    if container is dict and isinstance(raw, Mapping):
        return {key: one(item) for key, item in raw.items()}
    return BROKEN


# --- meters ---------------------------------------------------------------------------

# Which aggregations need, or may carry, which optional meter fields.
_NEEDS_VALUE = {"sum", "max", "latest", "unique_count"}
_DURATION_ONLY = ("rounding", "merge_property", "idle_timeout")


# What a duration meter's `unit` may be, in seconds.
DURATION_UNITS = {
    "s": 1,
    "second": 1,
    "seconds": 1,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}


class Rounding(_Spec):
    """How a duration meter rounds each span (after merging spans that touch)."""

    unit_seconds: Seconds = Field(
        gt=0,
        description="the rounding step, in seconds (60: whole minutes); at most a year",
        examples=[60],
    )
    mode: Literal["ceil", "floor", "nearest"] = Field(
        default="ceil",
        description="ceil (up), floor (down) or nearest (half up) to a whole step",
        examples=["ceil"],
    )


def _check_event_type(value: str) -> str:
    # As an event's own type: no event could match another, and PostgreSQL holds no NUL.
    if any(ch < "\x20" for ch in value):
        raise ValueError(f"must not contain control characters (U+0000 to U+001F) (got {value!r})")
    return value


class MeterSpec(_Ruled):
    """What to count: the events of one type, aggregated into usage."""

    event_type: Annotated[str, AfterValidator(_check_event_type)] = Field(
        min_length=1,
        description="the `type` of the events counted (no control characters)",
        examples=["media.activity"],
    )
    aggregation: Aggregation = Field(
        description="how events become usage: count (events), sum, max or latest (of "
        "value_property), unique_count (distinct values of value_property), gauge (a level set "
        "by value_property or changed by delta_property; usage is the period's highest level), "
        "duration (time streams are open, keyed by stream_property)",
        examples=["duration"],
    )
    value_property: str | None = Field(
        default=None,
        description="the `data` property holding the value: required for sum, max, latest and "
        "unique_count; for a gauge, an absolute reading of the level",
        examples=["bytes"],
    )
    delta_property: str | None = Field(
        default=None,
        description="gauge only: the `data` property holding a change of the level (+ or -)",
        examples=["hours_delta"],
    )
    stream_property: str | None = Field(
        default=None,
        description="duration only, required: the `data` property naming a stream",
        examples=["stream"],
    )
    merge_property: str | None = Field(
        default=None,
        description="duration only: the `data` property whose streams are merged (time "
        "counted once while any of them is open), e.g. per user",
        examples=["user"],
    )
    filter: dict[str, list[FilterValue]] = Field(
        default={},
        description="only events whose `data` has each property with one of its listed "
        "values (strings, numbers, booleans; one value stands for a list of one)",
        examples=[{"kind": ["mic", "camera", "screen"]}],
    )
    rounding: Rounding | None = Field(
        default=None,
        description="duration only: how each span is rounded (none: six decimals kept)",
        examples=[{"unit_seconds": 60, "mode": "ceil"}],
    )
    idle_timeout: Seconds | None = Field(
        default=None,
        gt=0,
        description="duration only, in seconds: a stream with no event for this long is "
        "closed at its last event",
        examples=[300],
    )
    unit: str = Field(
        default="unit",
        min_length=1,
        description="the unit usage is counted in, as shown to people; a duration meter's "
        "is seconds, minutes or hours: s, second, seconds, min, minute, minutes, h, hour, hours",
        examples=["minute"],
    )

    @field_validator("filter", mode="before")
    @classmethod
    def _scalar_filter_is_one_value_list(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {key: v if isinstance(v, list) else [v] for key, v in value.items()}
        return value

    def _problems(self) -> list[Problem]:
        kind = self.aggregation
        if kind is BROKEN:  # every rule here depends on it
            return []
        problems: list[Problem] = []
        if kind in _NEEDS_VALUE and self.value_property is None:
            problems.append((("value_property",), f"required for aggregation {kind!r}"))
        if kind == "gauge" and self.value_property is None and self.delta_property is None:
            problems.append(
                (("value_property",), "aggregation 'gauge' needs value_property or delta_property")
            )
        if kind == "duration" and self.stream_property is None:
            problems.append((("stream_property",), "required for aggregation 'duration'"))
        if kind == "duration" and self.unit is not BROKEN and self.unit not in DURATION_UNITS:
            problems.append(
                (
                    ("unit",),
                    f"a duration meter counts seconds, minutes or hours (got {self.unit!r})",
                )
            )
        if kind != "duration":
            problems += [
                ((field,), f"only allowed for aggregation 'duration' (got {kind!r})")
                for field in _DURATION_ONLY
                if getattr(self, field) is not None
            ]
        if kind != "gauge" and self.delta_property is not None:
            problems.append(
                (("delta_property",), f"only allowed for aggregation 'gauge' (got {kind!r})")
            )
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


class Allowance(_Ruled):
    """How much may be used in a period: exactly one of `fixed` and `per_seat`."""

    fixed: Quantity | None = Field(
        default=None,
        description="a fixed allowance per period, in the meter's unit",
        examples=[25],
    )
    per_seat: Quantity | None = Field(
        default=None,
        description="an allowance per seat and period, in the meter's unit: × the period's "
        "highest seat count",
        examples=[500],
    )

    def _problems(self) -> list[Problem]:
        if (self.fixed is None) == (self.per_seat is None):
            return [((), "needs exactly one of fixed, per_seat")]
        return []


class Notify(_Spec):
    """Which notices an entitlement sends, once per period each, and to whom."""

    percent_used: list[Annotated[Integer, Field(ge=1, le=100)]] = Field(
        default=[],
        description="notices when usage reaches these percents of the limit (1 to 100)",
        examples=[[85, 90, 95]],
    )
    percent_remaining: list[Annotated[Integer, Field(ge=0, le=99)]] = Field(
        default=[],
        description="notices when only these percents of the limit remain (0 to 99)",
        examples=[[10, 1]],
    )
    exhausted: bool = Field(
        default=False,
        description="a notice when usage reaches the limit",
        examples=[True],
    )
    recipients: Recipients = Field(
        default="admins",
        description="who gets the e-mails: admins, owner or members (owner falls back to "
        "admins and vice versa)",
        examples=["owner"],
    )

    @field_validator("percent_used", "percent_remaining")
    @classmethod
    def _sorted_unique(cls, values: list[int]) -> list[int]:
        return sorted(set(values))


class Topup(_Spec):
    """Blocks of extra allowance a customer may buy for the current period."""

    block_size: PositiveQuantity = Field(
        description="what one block adds, in the meter's unit (> 0)",
        examples=[1000],
    )
    price: Money = Field(
        description="what one block costs, in the plan's currency (at most its decimal places)",
        examples=["5.00"],
    )


class EntitlementSpec(_Ruled):
    """What a plan lets a customer use of one feature: a meter, an allowance and a limit."""

    meter: str = Field(description="the meter that counts this feature", examples=["media_minutes"])
    allowance: Allowance | None = Field(
        default=None,
        description="how much may be used per period; none: unlimited (enforcement none)",
        examples=[{"per_seat": 500}],
    )
    period: Period = Field(
        default="calendar_month",
        description="calendar_month (in the customer's time zone) or billing_cycle (from its "
        "billing_anchor)",
        examples=["billing_cycle"],
    )
    # Always set after validation: absent means "hard" with an allowance, "none" without.
    enforcement: Enforcement = Field(
        description="what happens at the limit: hard (blocked), soft (blocked past the limit "
        "plus slack), overage (billed past it, blocked past overage_limit if set), none; "
        "absent: hard with an allowance, none without",
        examples=["hard"],
    )
    slack: Quantity | None = Field(
        default=None,
        description="soft only: the share of the limit allowed past it (0.05: 5 %); 0 when absent",
        examples=[0.05],
    )
    overage_limit: Quantity | None = Field(
        default=None,
        description="overage only: how much may be used past the limit (the allowance plus "
        "grants), in the meter's unit; absent: never blocked",
        examples=[15],
    )
    notify: Notify | None = Field(
        default=None,
        description="the notices to send (needs an allowance)",
        examples=[{"percent_used": [90], "exhausted": True, "recipients": "owner"}],
    )
    topup: Topup | None = Field(
        default=None,
        description="blocks a customer may buy (needs an allowance)",
        examples=[{"block_size": 1000, "price": "5.00"}],
    )

    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        if filled.get("enforcement") is None:
            filled["enforcement"] = "none" if filled.get("allowance") is None else "hard"
        if filled["enforcement"] == "soft" and filled.get("slack") is None:
            filled["slack"] = Decimal(0)
        return filled

    def _problems(self) -> list[Problem]:
        mode = self.enforcement
        problems: list[Problem] = []
        if mode is not BROKEN:
            if self.allowance is None and mode != "none":
                problems.append((("enforcement",), f"enforcement {mode!r} needs an allowance"))
            if self.slack is not None and mode != "soft":
                problems.append(
                    (("slack",), f"only allowed with enforcement 'soft' (got {mode!r})")
                )
            if self.overage_limit is not None and mode != "overage":
                problems.append(
                    (("overage_limit",), f"only allowed with enforcement 'overage' (got {mode!r})")
                )
        if self.allowance is None:
            problems += [
                ((field,), "needs an allowance")
                for field in ("notify", "topup")
                if getattr(self, field) is not None
            ]
        return problems


# --- prices ---------------------------------------------------------------------------


class FlatPrice(_Spec):
    """A fixed fee per period."""

    type: Literal["flat"] = Field(description="this price's type", examples=["flat"])
    amount: Money = Field(
        description="the fee per period, in the plan's currency (at most its decimal places)",
        examples=["299.00"],
    )


class PerSeatPrice(_Spec):
    """A fee per seat and period, for the period's highest seat count."""

    type: Literal["per_seat"] = Field(description="this price's type", examples=["per_seat"])
    amount: Money = Field(
        description="the fee per seat and period, in the plan's currency (at most its decimal "
        "places)",
        examples=["12.00"],
    )


class UnitPrice(_Spec):
    """Every unit used, at one price."""

    type: Literal["unit"] = Field(description="this price's type", examples=["unit"])
    feature: str = Field(
        description="the plan's feature (an entitlements key) whose usage is priced",
        examples=["audio_connector"],
    )
    unit_price: Money = Field(
        description="the price of one unit of the meter, in the plan's currency (may be finer "
        "than a cent)",
        examples=["0.005"],
    )


class OveragePrice(_Spec):
    """Every unit used past the feature's allowance, at one price."""

    type: Literal["overage"] = Field(description="this price's type", examples=["overage"])
    feature: str = Field(
        description="the plan's feature (an entitlements key) whose usage is priced",
        examples=["managed_media"],
    )
    unit_price: Money = Field(
        description="the price of one unit past the allowance, in the plan's currency",
        examples=["20.00"],
    )


class Tier(_Spec):
    """One tier of a graduated or volume price."""

    up_to: PositiveQuantity | None = Field(
        default=None,
        description="the tier's last unit (up to and including), ascending; absent: unbounded "
        "(the last tier only)",
        examples=[5],
    )
    unit_price: Money = Field(
        description="the price of one unit in this tier, in the plan's currency",
        examples=["7.00"],
    )
    # charged once when usage reaches the tier
    flat_amount: Money | None = Field(
        default=None,
        description="a fee charged once when usage reaches this tier (at most the currency's "
        "decimal places)",
        examples=["10.00"],
    )


class _Tiered(_Ruled):
    """Tiers in ascending `up_to` (each "up to and including"); only the last unbounded."""

    feature: str = Field(
        description="the plan's feature (an entitlements key) whose usage is priced",
        examples=["api_calls"],
    )
    tiers: list[Tier] = Field(
        min_length=1,
        description="at least one tier, in ascending up_to; only the last may be unbounded",
        examples=[
            [
                {"up_to": 5, "unit_price": "7.00"},
                {"up_to": 10, "unit_price": "6.50"},
                {"unit_price": "6.00"},
            ]
        ],
    )

    @classmethod
    def _partial(
        cls, data: Mapping[str, Any], broken: set[str | int], info: ValidationInfo
    ) -> Self:
        return cls.model_construct(tiers=_each(_TIER, data.get("tiers"), info, list))

    def _problems(self) -> list[Problem]:
        if self.tiers is BROKEN:
            return []
        problems: list[Problem] = []
        last = len(self.tiers) - 1
        previous: Decimal | None = None
        for index, tier in enumerate(self.tiers):
            loc: Loc = ("tiers", index, "up_to")
            if tier is BROKEN:
                continue
            if tier.up_to is None:
                if index != last:
                    problems.append((loc, "only the last tier may be unbounded"))
                continue
            if previous is not None and tier.up_to <= previous:
                problems.append((loc, f"must be greater than the previous tier's {previous}"))
            previous = tier.up_to
        return problems


class GraduatedPrice(_Tiered):
    """Each tier prices the slice of usage that falls in it (plus its flat amount, if any,
    once usage reaches it)."""

    type: Literal["graduated"] = Field(description="this price's type", examples=["graduated"])


class VolumePrice(_Tiered):
    """Every unit at the price of the tier the total lands in (plus that tier's flat amount)."""

    type: Literal["volume"] = Field(description="this price's type", examples=["volume"])


_TIER: TypeAdapter[Tier] = TypeAdapter(Tier)


class PackagePrice(_Spec):
    """ceil(max(0, usage − free_units) / package_size) × amount: usage sold in packages."""

    type: Literal["package"] = Field(description="this price's type", examples=["package"])
    feature: str = Field(
        description="the plan's feature (an entitlements key) whose usage is priced",
        examples=["api_calls"],
    )
    package_size: PositiveQuantity = Field(
        description="the units in one package (> 0); a package started is a package sold",
        examples=[100],
    )
    amount: Money = Field(
        description="the price of one package, in the plan's currency (at most its decimal places)",
        examples=["5.00"],
    )
    free_units: Quantity = Field(
        default=Decimal(0),
        description="units free of charge before the first package",
        examples=[100],
    )


class TopupPrice(_Spec):
    """The top-up blocks of `feature` bought in the period, each at its purchase price."""

    type: Literal["topup"] = Field(description="this price's type", examples=["topup"])
    feature: str = Field(
        description="the plan's feature whose entitlement has a topup",
        examples=["media"],
    )


class MinimumPrice(_Spec):
    """A minimum spend: when the period's other lines come to less, a line makes up the rest."""

    type: Literal["minimum"] = Field(description="this price's type", examples=["minimum"])
    amount: Money = Field(
        description="the least the period's invoice comes to, in the plan's currency (at most "
        "its decimal places)",
        examples=["49.00"],
    )


Price = Annotated[
    FlatPrice
    | PerSeatPrice
    | UnitPrice
    | OveragePrice
    | GraduatedPrice
    | VolumePrice
    | PackagePrice
    | TopupPrice
    | MinimumPrice,
    Field(discriminator="type"),
]
PRICE_TYPES = (
    "flat",
    "per_seat",
    "unit",
    "overage",
    "graduated",
    "volume",
    "package",
    "topup",
    "minimum",
)
UNPRICED_FEATURE = ("flat", "per_seat", "minimum")  # price types that name no feature


# --- plans, customers, catalog --------------------------------------------------------


_PRICE: TypeAdapter[Any] = TypeAdapter(Price)
_ENTITLEMENT: TypeAdapter[EntitlementSpec] = TypeAdapter(EntitlementSpec)


class PlanSpec(_Ruled):
    """What a customer on this plan may use, and what it pays."""

    entitlements: dict[Name, EntitlementSpec] = Field(
        default={},
        description="by feature name: what may be used of it",
        examples=[{"media": {"meter": "media_minutes", "allowance": {"per_seat": 500}}}],
    )
    prices: list[Price] = Field(
        default=[],
        description="the invoice's lines, each by its type: flat, per_seat, unit, overage, "
        "graduated, volume, package, topup, minimum",
        examples=[[{"type": "flat", "amount": "299.00"}]],
    )
    next_plan: str | None = Field(
        default=None,
        description="the plan a customer with auto_upgrade moves to when it reaches a limit",
        examples=["sessions_200k"],
    )
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="the ISO 4217 code of the plan's amounts",
        examples=["EUR"],
    )

    @classmethod
    def _partial(
        cls, data: Mapping[str, Any], broken: set[str | int], info: ValidationInfo
    ) -> Self:
        return cls.model_construct(
            entitlements=_each(_ENTITLEMENT, data.get("entitlements", {}), info, dict),
            prices=_each(_PRICE, data.get("prices", []), info, list),
            currency=BROKEN if "currency" in broken else data.get("currency", "USD"),
        )

    def _problems(self) -> list[Problem]:
        """Amounts charged as they stand are in the currency's minor unit: an invoice would
        otherwise round them silently. Unit prices may be finer (0.005 a minute)."""
        if self.currency is BROKEN:
            return []
        digits = minor_digits(self.currency)
        charged: list[tuple[Loc, Decimal]] = []
        if self.prices is not BROKEN:
            for index, price in enumerate(self.prices):
                if isinstance(price, (FlatPrice, PerSeatPrice, PackagePrice, MinimumPrice)):
                    charged.append((("prices", index, "amount"), price.amount))
                elif isinstance(price, (GraduatedPrice, VolumePrice)):
                    charged += [
                        (("prices", index, "tiers", k, "flat_amount"), tier.flat_amount)
                        for k, tier in enumerate(price.tiers)
                        if tier is not BROKEN and tier.flat_amount is not None
                    ]
        if self.entitlements is not BROKEN:
            charged += [
                (("entitlements", feature, "topup", "price"), spec.topup.price)
                for feature, spec in self.entitlements.items()
                if spec is not BROKEN and spec.topup is not None
            ]
        rule = (
            f"must be a whole amount in {self.currency}"
            if digits == 0
            else f"must have at most {digits} decimal places in {self.currency}"
        )
        return [
            (loc, f"{rule} (got {amount})")
            for loc, amount in charged
            if decimal_places(amount) > digits
        ]


class CustomerSpec(_Spec):
    """A customer, its starting plan and seats (later changes go through the API)."""

    plan: str = Field(description="the plan the customer starts on", examples=["basic"])
    seats: Annotated[Integer, _at_most(MAX_SEATS)] = Field(
        default=0,
        ge=0,
        description="the seats it starts with (0 to 1,000,000,000), for per_seat allowances "
        "and prices",
        examples=[10],
    )
    admins: list[Email] = Field(
        default=[],
        description="e-mail addresses of its administrators",
        examples=[["ops@acme.example"]],
    )
    owner: Email | None = Field(
        default=None,
        description="the e-mail address of its owner",
        examples=["owner@studio.example"],
    )
    members: list[Email] = Field(
        default=[],
        description="e-mail addresses of its members (told when access is blocked)",
        examples=[["ana@acme.example"]],
    )
    timezone: str = Field(
        default="UTC",
        description="an IANA time zone: where its calendar months start",
        examples=["Europe/Paris"],
    )
    billing_anchor: date | None = Field(
        default=None,
        description="the date its billing cycles start from (YYYY-MM-DD); absent: the 1st",
        examples=["2026-01-15"],
    )
    auto_upgrade: bool = Field(
        default=False,
        description="move to the plan's next_plan when a limit is reached",
        examples=[True],
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Catalog(_Spec):
    """Meters, plans and customers: the whole configuration, applied at once."""

    meters: dict[Name, MeterSpec] = Field(
        default={},
        description="by meter name: what to count",
        examples=[{"sessions": {"event_type": "session.created", "aggregation": "count"}}],
    )
    plans: dict[Name, PlanSpec] = Field(
        default={},
        description="by plan name: entitlements and prices",
        examples=[{"free": {"entitlements": {}}}],
    )
    customers: dict[Name, CustomerSpec] = Field(
        default={},
        description="by customer key: plan, seats and people",
        examples=[{"acme": {"plan": "free"}}],
    )

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        plans = {name: plan.model_dump() for name, plan in self.plans.items()}
        customers = {key: customer.model_dump() for key, customer in self.customers.items()}
        _raise_problems(_reference_problems(set(self.meters), set(self.plans), plans, customers))
        return self

    def plan_features(self, plan: str) -> dict[str, EntitlementSpec]:
        return self.plans[plan].entitlements

    def entitlement(
        self, customer_key: str, feature: str
    ) -> tuple[CustomerSpec, PlanSpec, EntitlementSpec]:
        """The customer, its plan and the plan's entitlement for `feature`; KeyError if any is
        missing."""
        customer = self.customers.get(customer_key)
        if customer is None:
            raise KeyError(f"unknown customer {customer_key!r}")
        plan = self.plans[customer.plan]
        spec = plan.entitlements.get(feature)
        if spec is None:
            raise KeyError(
                f"plan {customer.plan!r} of customer {customer_key!r} has no feature {feature!r}"
            )
        return customer, plan, spec


# --- what a new catalog changes ------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """Names added, removed, and kept with another definition, each sorted."""

    added: list[str]
    removed: list[str]
    changed: list[str]

    @classmethod
    def between(cls, before: Mapping[str, object], after: Mapping[str, object]) -> Changes:
        return cls(
            sorted(set(after) - set(before)),
            sorted(set(before) - set(after)),
            sorted(name for name in set(before) & set(after) if before[name] != after[name]),
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


@dataclass(frozen=True)
class CatalogDiff:
    meters: Changes
    plans: Changes
    customers: Changes
    rebuilt_meters: list[str]  # added or redefined: their usage is recomputed from the events

    def as_dict(self) -> dict[str, dict[str, list[str]]]:
        return {
            "meters": self.meters.as_dict(),
            "plans": self.plans.as_dict(),
            "customers": self.customers.as_dict(),
        }


def diff(before: Catalog, after: Catalog) -> CatalogDiff:
    meters = Changes.between(before.meters, after.meters)
    return CatalogDiff(
        meters,
        Changes.between(before.plans, after.plans),
        Changes.between(before.customers, after.customers),
        sorted(meters.added + meters.changed),
    )


# --- cross references -----------------------------------------------------------------


@dataclass(frozen=True)
class _PlanRefs:
    """What a plan names elsewhere, read from its document as far as each part is readable,
    so that a type error anywhere in the plan hides none of its references."""

    meters: dict[str, str] = field(default_factory=dict)  # feature -> the meter it names
    features: set[str] = field(default_factory=set)  # every feature named, readable or not
    topups: set[str] = field(default_factory=set)  # features with a topup
    priced: list[tuple[int, str, str]] = field(default_factory=list)  # (index, price type, feature)
    next_plan: str | None = None


def _plan_refs(raw: object) -> _PlanRefs:
    if not isinstance(raw, Mapping):
        return _PlanRefs()
    refs = _PlanRefs(
        next_plan=raw.get("next_plan") if isinstance(raw.get("next_plan"), str) else None
    )
    entitlements = raw.get("entitlements")
    for feature, body in entitlements.items() if isinstance(entitlements, Mapping) else ():
        refs.features.add(str(feature))
        if isinstance(body, Mapping):
            if isinstance(body.get("meter"), str):
                refs.meters[str(feature)] = body["meter"]
            if body.get("topup") is not None:
                refs.topups.add(str(feature))
        else:  # unreadable: it may well sell a topup
            refs.topups.add(str(feature))
    prices = raw.get("prices")
    for index, price in enumerate(prices if isinstance(prices, list) else ()):
        if (
            isinstance(price, Mapping)
            and isinstance(price.get("type"), str)
            and isinstance(price.get("feature"), str)
        ):
            refs.priced.append((index, price["type"], price["feature"]))
    return refs


def _reference_problems(
    meter_names: set[str] | None,
    plan_names: set[str] | None,
    plans: Mapping[str, object],
    customers: Mapping[str, object],
) -> list[Problem]:
    """Broken references among the parts of the document, parsed or not (`plans` and
    `customers` as written, or as dumped from their specs).

    Existence is checked against every name in the document, parsed or not, so a meter
    with a type error is not also reported as missing by each plan using it; None (a
    section that is not a mapping of names) checks nothing against that section.
    """
    refs = {name: _plan_refs(raw) for name, raw in plans.items()}
    problems: list[Problem] = []
    for name, plan in refs.items():
        problems += _plan_reference_problems(name, plan, meter_names, plan_names)
    problems += _next_plan_cycles(refs)
    for key, customer in customers.items():
        plan_name = customer.get("plan") if isinstance(customer, Mapping) else None
        if isinstance(plan_name, str) and plan_names is not None and plan_name not in plan_names:
            problems.append((("customers", key, "plan"), f"unknown plan {plan_name!r}"))
    return problems


def _plan_reference_problems(
    name: str, plan: _PlanRefs, meter_names: set[str] | None, plan_names: set[str] | None
) -> list[Problem]:
    problems: list[Problem] = []
    for feature, meter in plan.meters.items():
        if meter_names is not None and meter not in meter_names:
            problems.append(
                (("plans", name, "entitlements", feature, "meter"), f"unknown meter {meter!r}")
            )
    features = ", ".join(sorted(plan.features)) or "no features"
    for index, kind, feature in plan.priced:
        loc: Loc = ("plans", name, "prices", index, "feature")
        if kind in UNPRICED_FEATURE or kind not in PRICE_TYPES:
            continue
        if feature not in plan.features:
            problems.append((loc, f"unknown feature {feature!r} (plan {name} has: {features})"))
        elif kind == "topup" and feature not in plan.topups:
            problems.append((loc, f"feature {feature!r} has no topup to sell"))
    if plan.next_plan == name:
        problems.append((("plans", name, "next_plan"), "a plan cannot be its own next_plan"))
    elif plan.next_plan is not None and plan_names is not None and plan.next_plan not in plan_names:
        problems.append((("plans", name, "next_plan"), f"unknown plan {plan.next_plan!r}"))
    return problems


def _next_plan_cycles(plans: Mapping[str, _PlanRefs]) -> list[Problem]:
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
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


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
            problems.append(((*loc, "type"), _reason(item)))
        else:
            problems.append((loc, _reason(item)))
    return problems


# --- entry points ---------------------------------------------------------------------

_SECTIONS: dict[str, TypeAdapter[Any]] = {
    "meters": TypeAdapter(MeterSpec),
    "plans": TypeAdapter(PlanSpec),
    "customers": TypeAdapter(CustomerSpec),
}


@dataclass
class _Section:
    parsed: dict[str, Any] = field(default_factory=dict)  # name -> spec, for the valid entries
    written: dict[str, object] = field(
        default_factory=dict
    )  # name -> the entry as written, valid or not
    readable: bool = True  # False when the section is not a mapping of names
    problems: list[Problem] = field(default_factory=list)


def _parse_section(section: str, raw: object, context: dict[str, Any] | None) -> _Section:
    """Validate each entry of one section on its own, so one bad entry hides no other."""
    if raw is None:
        return _Section()
    if not isinstance(raw, Mapping):
        return _Section(
            readable=False,
            problems=[((section,), f"must be a mapping of names (got {_describe(raw)})")],
        )
    adapter = _SECTIONS[section]
    out = _Section()
    for name, body in raw.items():
        if not isinstance(name, str):
            out.problems.append(
                ((section, str(name)), f"name must be a string (got {_describe(name)})")
            )
            continue
        out.written[name] = body
        try:
            _check_name(name)
        except ValueError as bad:
            out.problems.append(((section, name), str(bad)))
        try:
            out.parsed[name] = adapter.validate_python(body, context=context)
        except ValidationError as error:
            out.problems += _problems_from(error, (section, name))
    return out


def validate_catalog(doc: object, *, stored: bool = False) -> Catalog:
    """The catalog in `doc` (parsed YAML or JSON), or CatalogInvalid listing every error.

    `stored`: the document was applied before and is read back from the database; it is not
    held to bounds added since (a catalog in force must keep loading after an upgrade).
    """
    if not isinstance(doc, Mapping):
        raise CatalogInvalid(
            [f"catalog: must be a mapping with meters, plans and customers (got {_describe(doc)})"]
        )
    context = {_STORED: True} if stored else None
    problems: list[Problem] = [
        ((str(key),), "unknown field") for key in doc if key not in _SECTIONS
    ]
    meters = _parse_section("meters", doc.get("meters"), context)
    plans = _parse_section("plans", doc.get("plans"), context)
    customers = _parse_section("customers", doc.get("customers"), context)
    problems += meters.problems + plans.problems + customers.problems
    problems += _reference_problems(
        set(meters.written) if meters.readable else None,
        set(plans.written) if plans.readable else None,
        plans.written,
        customers.written,
    )
    if problems:
        raise CatalogInvalid([f"{_render_loc(loc)}: {reason}" for loc, reason in problems])
    return Catalog(meters=meters.parsed, plans=plans.parsed, customers=customers.parsed)


def load_yaml(text: str) -> object:
    """The YAML document in `text`; a syntax error becomes CatalogInvalid with its position."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if mark is None:
            raise CatalogInvalid([f"yaml: {problem}"]) from error
        raise CatalogInvalid(
            [f"yaml: line {mark.line + 1}, column {mark.column + 1}: {problem}"]
        ) from error
    except yaml.YAMLError as error:
        raise CatalogInvalid([f"yaml: {error}"]) from error


def catalog_to_json(catalog: Catalog) -> dict[str, Any]:
    """The catalog as plain JSON values (Decimals as strings, dates ISO); `validate_catalog` reads
    it back."""
    return catalog.model_dump(mode="json", exclude_none=True)
