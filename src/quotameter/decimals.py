"""Exact numbers as quotameter keeps them: how large, how fine, and one way to write them.

Stored quantities and money are NUMERIC(38, 12) (see `store.tables.Decimal`): below 10^15,
like event values, with at most 12 decimal places. Within those bounds a product of two
(a quantity × a unit price) is exact in `EXACT`, the context invoice arithmetic runs in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Context, Decimal, localcontext
from typing import ParamSpec, TypeVar

PLACES = 12
LARGEST = Decimal(10) ** 15  # exclusive
# Enough digits for the product of two numbers of 27 digits each, then some: no rounding
# happens before the rounding we mean (to the currency's minor unit).
EXACT = Context(prec=80)

P = ParamSpec("P")
R = TypeVar("R")


def canonical(value: Decimal) -> Decimal:
    """The value without trailing fractional zeros, and never in exponent form (2300, 2.5).

    PostgreSQL answers NUMERIC(38, 12) with all twelve places (2300.000000000000) and SQLite
    the text as stored: one form for both keeps every number read the same on either.
    Exact at any size (no context rounding, unlike `Decimal.normalize`)."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN, Infinity: nothing to tidy
        return value
    if not any(digits):
        return Decimal(0)
    kept = list(digits)
    while exponent < 0 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if exponent > 0:
        kept += [0] * exponent
        exponent = 0
    return Decimal((sign, tuple(kept), exponent))


def decimal_places(value: Decimal) -> int:
    """How many decimal places the value needs (1.50 needs 1, 1E+3 none)."""
    exponent = canonical(value).as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def exact(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` in the `EXACT` context: its products and sums are not rounded on the way."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(EXACT):
            return fn(*args, **kwargs)

    return wrapper
