"""Money: each currency's minor unit, rounding to it, and how amounts are written.

An amount (a line, a total, a fee) is written with exactly its currency's places ("0.00",
"299.00", JPY "500"); a unit price keeps its own precision but never shows fewer places
than the currency ("5.00", "0.005").
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from quotameter.decimals import EXACT, canonical, decimal_places

# Currencies whose minor unit is not the cent (ISO 4217); every other has two decimals.
_MINOR_DIGITS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency, 2)


def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit (0.285 → 0.29, −0.285 → −0.29)."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP, context=EXACT)


def padded(price: Decimal, currency: str) -> Decimal:
    """A price with at least the currency's places and no needless zeros past them
    (5 → 5.00, 0.005 stays, 0.0050 → 0.005)."""
    tidy = canonical(price)
    if decimal_places(tidy) >= minor_digits(currency):
        return tidy
    return tidy.quantize(minor_unit(currency), context=EXACT)


def amount_text(amount: Decimal, currency: str) -> str:
    """An amount as written everywhere (JSON, CSV, HTML, the CLI): its currency's places."""
    return format(round_money(amount, currency), "f")


def price_text(price: Decimal, currency: str) -> str:
    """A unit price as written everywhere: at least the currency's places, more if it has them."""
    return format(padded(price, currency), "f")
