"""The per-customer change counter that lets processes cache balances safely."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

from quotameter.store import bulk

_BUMP = (
    "ON CONFLICT (customer) DO UPDATE SET version = customer_state.version + 1, "
    "horizon_us = {greatest}(customer_state.horizon_us, excluded.horizon_us)"
)


def version_of(customer: str) -> str:
    """The change counter of the customer that the SQL expression `customer` names, as an SQL
    scalar subquery (NULL when nothing is recorded): for other domains' one-statement reads."""
    return f"(SELECT version FROM customer_state WHERE customer = {customer})"


VERSION = version_of(":c")
HORIZON = "(SELECT horizon_us FROM customer_state WHERE customer = :c)"
"""The change counter and horizon of customer `:c`, as SQL scalar subqueries."""
_READ = text("SELECT version, horizon_us FROM customer_state WHERE customer = :c")
_VERSIONS = text("SELECT customer, version FROM customer_state")


def bump(conn: Connection, horizons: Iterable[tuple[str, int]]) -> None:
    """Record that these customers' balance inputs changed, stamped up to the given instants.
    One statement for all customers of a batch; sorted, so concurrent writers take the row
    locks in the same order."""
    greatest = "max" if conn.dialect.name == "sqlite" else "GREATEST"
    bulk.insert(
        conn,
        "customer_state",
        ("customer", "horizon_us", "version"),
        ("text", "bigint", "integer"),
        [(c, h, 1) for c, h in sorted(horizons)],
        _BUMP.format(greatest=greatest),
    )


def read(conn: Connection, customer: str) -> tuple[int, int]:
    row = conn.execute(_READ, {"c": customer}).first()
    return (0, 0) if row is None else (row.version, row.horizon_us)


def versions(conn: Connection) -> dict[str, int]:
    """Every customer's change counter (0: nothing recorded yet), in one query."""
    return {row.customer: row.version for row in conn.execute(_VERSIONS)}
