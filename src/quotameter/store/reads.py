"""One-statement reads answered on the event loop, where every request asks one (a check's
freshness read): they must never hold the loop for longer than their own work.

- SQLite: the read is a local call of a few tens of microseconds that never waits for a
  writer (WAL), so it runs right there, on the driver's cursor (`engine.one_row`).
- PostgreSQL: the read is a round trip of a few hundred microseconds, most of it waiting for
  the server; on the loop's own connections (psycopg's asyncio connections, from
  psycopg_pool) the loop answers other requests meanwhile, and as many reads are in flight
  as requests need them, instead of one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine, TextClause

from quotameter.errors import Overloaded
from quotameter.store.engine import driver_sql, one_row

WAIT_SECONDS = 2.0  # for a free connection, then 503 with Retry-After


class LoopReads(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def one_row(self, statement: TextClause, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The one row of the statement (LookupError: none)."""
        ...


class SqliteReads:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def one_row(self, statement: TextClause, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return one_row(self.engine, statement, params)


class PostgresReads:
    """Pools of autocommit asyncio connections (READ COMMITTED gives each statement its own
    snapshot anyway, so a transaction would add only its BEGIN and ROLLBACK round trips), one
    per event loop: an asyncio connection belongs to the loop it was made on. A lifespan opens
    its loop's pool and closes it; a loop that asks without one (an app served without its
    lifespan) gets its pool at its first read."""

    def __init__(self, engine: Engine, max_size: int = 16, wait: float = WAIT_SECONDS) -> None:
        self.engine, self.max_size, self.wait = engine, max_size, wait
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}

    async def open(self) -> None:
        await self._pool()

    async def close(self) -> None:
        pool = self.pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def _pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self.pools.get(loop)
        if pool is None:
            pool = self.pools[loop] = AsyncConnectionPool(
                self.conninfo,
                min_size=min(2, self.max_size),
                max_size=self.max_size,
                timeout=self.wait,
                kwargs={"autocommit": True},
                open=False,
                name="quotameter-loop-reads",
            )
            await pool.open()
        return pool

    async def one_row(self, statement: TextClause, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Asked once more if the connection turned out dead (the database restarted since it
        was pooled, or a proxy cut it), after the pool has dropped every dead connection."""
        sql, _ = driver_sql(self.engine, statement)
        pool = await self._pool()
        for attempt in (1, 2):
            try:
                async with pool.connection() as conn:
                    cursor = await conn.execute(sql, params)
                    row = await cursor.fetchone()
            except PoolTimeout:
                raise Overloaded(
                    f"database: every connection busy for {self.wait:g} s; send it again",
                    retry_after=1,
                ) from None
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                await pool.check()  # the others were likely cut too: drop every dead one
                continue
            if row is None:
                raise LookupError(f"no row from {sql}")
            return tuple(row)
        raise AssertionError("unreachable: the second attempt returns or raises")


def loop_reads(engine: Engine) -> LoopReads:
    return SqliteReads(engine) if engine.dialect.name == "sqlite" else PostgresReads(engine)
