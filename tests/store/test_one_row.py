"""`one_row` and the event loop's reads: one-statement reads in either database's parameter
style, outside any transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, text

from quotameter.errors import Overloaded
from quotameter.store.engine import one_row, unit_of_work
from quotameter.store.reads import PostgresReads, loop_reads

T = TypeVar("T")

PAIR = text("SELECT :b AS b, :a AS a, :a || :b AS both")
WATERMARK = text("SELECT count(*) FROM events WHERE subject = :s")


def on_a_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run it on a new event loop in a thread of its own, whatever this thread has."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


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


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_loop_reads_on_postgresql_answer_on_the_loop_and_refuse_when_every_connection_is_busy(
    engine: Engine,
) -> None:
    reads = PostgresReads(engine, max_size=1, wait=0.05)

    async def scenario() -> None:
        await reads.open()
        try:
            assert await reads.one_row(PAIR, {"a": "x", "b": "y"}) == ("y", "x", "xy")
            pool = reads.pools[asyncio.get_running_loop()]
            async with pool.connection():  # the only connection, held elsewhere
                with pytest.raises(Overloaded) as refused:
                    await reads.one_row(PAIR, {"a": "x", "b": "y"})
            assert refused.value.retry_after == 1
            assert await reads.one_row(WATERMARK, {"s": "acme"}) == (0,)
        finally:
            await reads.close()

    on_a_loop(scenario())


def test_loop_reads_on_sqlite_are_the_drivers_one_row(db_url: str, engine: Engine) -> None:
    reads = loop_reads(engine)
    if engine.dialect.name != "sqlite":
        assert isinstance(reads, PostgresReads)
        return
    assert on_a_loop(reads.one_row(PAIR, {"a": "1", "b": "2"})) == ("2", "1", "12")
