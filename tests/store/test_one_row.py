"""`one_row`: a one-statement read on the driver's cursor, in either database's parameter style."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from quotameter.store.engine import one_row, unit_of_work

PAIR = text("SELECT :b AS b, :a AS a, :a || :b AS both")
WATERMARK = text("SELECT count(*) FROM events WHERE subject = :s")


def test_named_parameters_reach_their_places_in_either_style(engine: Engine) -> None:
    assert one_row(engine, PAIR, {"a": "x", "b": "y"}) == ("y", "x", "xy")
    assert one_row(engine, PAIR, {"a": "1", "b": "2"}) == ("2", "1", "12")


def test_it_reads_what_is_committed_outside_any_transaction(engine: Engine) -> None:
    assert one_row(engine, WATERMARK, {"s": "acme"}) == (0,)
    with unit_of_work(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO events (source, event_id, type, subject, time_us, data, received_us)"
                " VALUES ('s', 'e1', 't', 'acme', 1, '{}', 1)"
            )
        )
        assert one_row(engine, WATERMARK, {"s": "acme"}) == (0,)  # not committed yet
    assert one_row(engine, WATERMARK, {"s": "acme"}) == (1,)


def test_no_row_is_an_error_not_a_none(engine: Engine) -> None:
    with pytest.raises(LookupError):
        one_row(engine, text("SELECT 1 FROM events WHERE 1 = 0"), {})
