"""Words shared by what people read: e-mails and invoices."""

from __future__ import annotations

from decimal import Decimal


def plural(unit: str | None, value: Decimal | str | int | None = None) -> str:
    """A unit as it reads after `value`: "1 minute", "5 hours" (no value: the plural)."""
    unit = unit or "unit"
    if value is not None and Decimal(str(value)) == 1:
        return unit
    return unit if unit.endswith("s") else unit + "s"
