"""Many rows in one statement, on both databases, for the write path of a batch.

A batch writes hundreds of rows per table. Going through SQLAlchemy's executemany costs a
per-row parameter processing larger than the database's own work, and on PostgreSQL one
round of the pipeline per row. Here the rows go straight to the driver:

- SQLite: one prepared statement run by the driver's executemany (in process: no round
  trip), written so that each row is one index seek;
- PostgreSQL: one statement whose rows come from `unnest` over one array per column, so a
  whole set is one statement and one round trip.

Rows are used in the order given: writers sort them so that concurrent batches lock shared
rows in the same order. `types` are the PostgreSQL types of a row's values (text, bigint,
integer, boolean, numeric); decimals are kept as text on SQLite (see store.tables.Decimal).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, func, select


def insert(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    on_conflict: str = "",
) -> None:
    """INSERT the rows into `table`; `on_conflict` is an optional ON CONFLICT clause."""
    names = ", ".join(columns)
    if conn.dialect.name == "sqlite":
        _sqlite(
            conn,
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))}) {on_conflict}",
            rows,
        )
    else:
        _postgresql(
            conn,
            f"INSERT INTO {table} ({names}) SELECT {_cols(len(columns))} FROM {{rows}} "
            f"{on_conflict}",
            types,
            rows,
        )


def delete(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """DELETE the rows of `table` whose `columns` equal one of `rows`."""
    if conn.dialect.name == "sqlite":
        _sqlite(
            conn, f"DELETE FROM {table} WHERE " + " AND ".join(f"{c} = ?" for c in columns), rows
        )
    else:
        match = " AND ".join(f"{table}.{c} = r.c{n}" for n, c in enumerate(columns))
        _postgresql(conn, f"DELETE FROM {table} USING {{rows}} WHERE {match}", types, rows)


def update(
    conn: Connection,
    table: str,
    keys: Sequence[str],
    values: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """SET `values` of the row of `table` whose `keys` match: each row is keys then values."""
    if conn.dialect.name == "sqlite":
        _sqlite(
            conn,
            f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in values)} "
            f"WHERE {' AND '.join(f'{c} = ?' for c in keys)}",
            [(*row[len(keys) :], *row[: len(keys)]) for row in rows],
        )
    else:
        sets = ", ".join(f"{c} = r.c{len(keys) + n}" for n, c in enumerate(values))
        match = " AND ".join(f"{table}.{c} = r.c{n}" for n, c in enumerate(keys))
        _postgresql(conn, f"UPDATE {table} SET {sets} FROM {{rows}} WHERE {match}", types, rows)


def _cols(n: int) -> str:
    return ", ".join(f"r.c{i}" for i in range(n))


def _sqlite(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        values = [
            tuple(format(v, "f") if isinstance(v, Decimal) else v for v in row) for row in rows
        ]
        conn.exec_driver_sql(sql, values)


def _postgresql(
    conn: Connection, sql: str, types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    if not rows:
        return
    names = ", ".join(f"c{n}" for n in range(len(types)))
    arrays = ", ".join(f"CAST(%s AS {t}[])" for t in types)
    source = f"(SELECT * FROM unnest({arrays}) WITH ORDINALITY AS u({names}, n) ORDER BY n) AS r"
    conn.exec_driver_sql(
        sql.format(rows=source), tuple(list(col) for col in zip(*rows, strict=True))
    )


def names(conn: Connection, param: str) -> str:
    """SQL for the set of names given as one parameter `:param`, a JSON array (`as_names`):
    `column IN (…)` with it is one statement text whatever the number of names, compiled and
    prepared once, where an IN list of bound values is a new statement for every length."""
    if conn.dialect.name == "sqlite":
        return f"SELECT value FROM json_each(:{param})"
    return f"SELECT jsonb_array_elements_text(CAST(:{param} AS jsonb))"


def as_names(keys: Iterable[str]) -> str:
    """The value of a `names` parameter: the distinct keys, sorted."""
    return orjson.dumps(sorted(set(keys))).decode()


_CHUNK = 500  # names per IN list, well within every database's limit on bound parameters


def count_by(
    conn: Connection, column: ColumnElement[Any], keys: Sequence[str], *where: ColumnElement[bool]
) -> dict[str, int]:
    """How many rows each of `keys` has in `column`'s table (keys with none left out)."""
    return _per_key(conn, column, func.count(), keys, *where)


def min_by(
    conn: Connection, column: ColumnElement[Any], value: ColumnElement[Any], keys: Sequence[str]
) -> dict[str, Any]:
    """The smallest `value` of each of `keys` in `column`'s table (keys with none left out)."""
    return _per_key(conn, column, func.min(value), keys)


def _per_key(
    conn: Connection,
    column: ColumnElement[Any],
    aggregate: ColumnElement[Any],
    keys: Sequence[str],
    *where: ColumnElement[bool],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = sorted(set(keys))
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        query = select(column, aggregate).where(column.in_(chunk), *where).group_by(column)
        for key, found in conn.execute(query):
            out[key] = found
    return out
