"""Top-ups and credits: extra allowance, effective at once, gone at the period's end
unless it rolls over (then its unused part carries into the next period, once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row

from quotameter.grants import repository
from quotameter.money import amount_text
from quotameter.timeutil import from_us


@dataclass(frozen=True)
class GrantRequest:
    customer: str
    grant_id: str
    feature: str
    kind: str  # topup | credit
    amount: Decimal | None = None  # credit
    blocks: int | None = None  # topup
    rollover: bool = False


def store(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a grant; False when its id was already used (nothing written)."""
    return repository.add(conn, row)


def get(conn: Connection, customer: str, grant_id: str) -> Any:
    """The customer's grant with this id, or None."""
    return repository.get(conn, customer, grant_id)


def as_dict(row: Row[Any], currency: str) -> dict[str, Any]:
    """A grant as the API shows it; a top-up's price is money in `currency` (the plan's)."""
    return {
        "id": row.grant_id,
        "feature": row.feature,
        "kind": row.kind,
        "amount": Decimal(row.amount),
        "blocks": row.blocks,
        "price": None if row.price is None else amount_text(Decimal(row.price), currency),
        "rollover": row.rollover,
        "effective_at": from_us(row.effective_us),
        "expires_at": from_us(row.expires_us),
    }


def listing(conn: Connection, customer: str) -> list[Row[Any]]:
    """The customer's grants, in effective order."""
    return repository.listing(conn, customer)


def in_force(
    conn: Connection, customer: str, feature: str, period_start_us: int, at_us: int
) -> tuple[Decimal, bool]:
    """(grants bought in this period in force at `at`, whether an earlier rollover grant
    carries into it)."""
    return repository.in_force(conn, customer, feature, period_start_us, at_us)


def rollover_total(
    conn: Connection, customer: str, feature: str, period_start_us: int, at_us: int
) -> Decimal:
    """The rollover grants bought in the period starting at `period_start_us`, in force at
    `at_us`."""
    return repository.rollover_total(conn, customer, feature, period_start_us, at_us)


def earliest(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """Per customer, the earliest instant a grant of it takes effect (customers with none left
    out)."""
    return repository.earliest(conn, customers)


def last_recorded(conn: Connection, customer: str, lo: int, hi: int) -> int | None:
    """When the customer's last grant effective in [lo, hi) was recorded."""
    return repository.last_recorded(conn, customer, lo, hi)


def topups(conn: Connection, customer: str, start_us: int, upto_us: int) -> list[Any]:
    """Top-ups effective in [start, upto]: grant_id, feature, blocks, price, effective_us."""
    return repository.topups(conn, customer, start_us, upto_us)


def count_by_customer(conn: Connection, customers: Sequence[str]) -> dict[str, int]:
    """How many grants each customer has (customers with none left out)."""
    return repository.count_by_customer(conn, customers)
