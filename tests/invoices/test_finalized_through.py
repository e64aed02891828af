"""What each customer of a batch has finalized, read in one statement whatever their number.

Every batch of events asks it for the customers it touches (hundreds in a live feed). As an
IN list of bound names it was a new statement for every number of customers, parsed and
planned again on each batch; as one array parameter it is a single statement.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, delete, insert

from quotameter.invoices import repository as repo
from quotameter.store.engine import unit_of_work
from quotameter.store.tables import invoices
from support import statements


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_the_finalized_ends_of_any_set_of_customers_are_one_statement(engine: Engine) -> None:
    ends = {f"c{n:03}": [100 * n, 100 * n + 50] for n in range(1, 40, 3)}
    with unit_of_work(engine) as conn:
        conn.execute(delete(invoices))
        conn.execute(
            insert(invoices),
            [
                {
                    "customer": customer,
                    "period_start_us": end - 10,
                    "period_end_us": end,
                    "plan": "p",
                    "currency": "EUR",
                    "total": "0",
                    "lines": "[]",
                    "finalized_us": end,
                }
                for customer, customer_ends in ends.items()
                for end in customer_ends
            ],
        )
    asked = [[f"c{n:03}" for n in range(k)] for k in (1, 2, 7, 40)] + [["c004", "c004", "x'y"]]
    with engine.connect() as conn, statements(engine) as seen:
        found = [repo.finalized_through_many(conn, names) for names in asked]
    assert found == [{c: max(ends[c]) for c in names if c in ends} for names in asked]
    assert len(set(seen)) == 1 and len(seen) == len(asked)
    with engine.connect() as conn:
        assert repo.finalized_through_many(conn, []) == {}
        assert repo.finalized_through_many(conn, None) == {c: max(e) for c, e in ends.items()}
