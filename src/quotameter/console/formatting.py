"""Numbers, money and dates as people read them: 4,526 minutes, 30.25 h, $5.00, 1 Dec 2026."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal

from quotameter.wording import plural

LOCALE = "en_US"
SHORT_UNITS = {"hour": "h", "second": "s"}  # units people write short after a number


def number(value: Decimal | int | float | str | None) -> str:
    """4526 -> "4,526"; 30.25 -> "30.25"; at most two decimal places."""
    if value is None:
        return "—"
    return format_decimal(Decimal(str(value)), format="#,##0.##", locale=LOCALE)


def quantity(value: Decimal | int | float | str | None, unit: str | None) -> str:
    """4526 minute -> "4,526 minutes"; 30.25 hour -> "30.25 h"; 1 session -> "1 session"."""
    if value is None:
        return "no limit"
    short = SHORT_UNITS.get(unit or "")
    if short:
        return f"{number(value)} {short}"
    return f"{number(value)} {plural(unit, Decimal(str(value)))}"


def money(value: Decimal | int | str | None, currency: str = "USD") -> str:
    """5, "USD" -> "$5.00"; 12.5, "EUR" -> "€12.50"."""
    if value is None:
        return "—"
    return format_currency(Decimal(str(value)), currency, locale=LOCALE)


def percent(value: Decimal | int | float | None) -> str:
    """90.43 -> "90.4 %"."""
    if value is None:
        return "—"
    return f"{format_decimal(Decimal(str(value)), format='#,##0.#', locale=LOCALE)} %"


def day(value: datetime | None, zone: str = "UTC") -> str:
    """The date in the zone: "1 Dec 2026"."""
    if value is None:
        return "—"
    return format_date(value.astimezone(ZoneInfo(zone)), "d MMM y", locale=LOCALE)


def moment(value: datetime | None, zone: str = "UTC") -> str:
    """The instant in the zone: "20 Nov 2026, 15:00 UTC"."""
    if value is None:
        return "—"
    local = value.astimezone(ZoneInfo(zone))
    return f"{format_datetime(local, 'd MMM y, HH:mm', locale=LOCALE)} {local.tzname()}"


FILTERS = {
    "number": number,
    "quantity": quantity,
    "money": money,
    "percent": percent,
    "day": day,
    "moment": moment,
}
