"""What a domain operation runs in: the caller's connection and the catalog in force.

Services take a `Context` first instead of repeating `(conn, catalog, …)`. The caller owns
both: the connection's transaction (a use case or an endpoint opens it) and the catalog it
read in that transaction. Instants stay explicit arguments: each operation is asked about
one instant (`at`, `now`), which is what keeps time an argument everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from quotameter.catalog.service import LoadedCatalog


@dataclass(frozen=True, slots=True)
class Context:
    conn: Connection
    catalog: LoadedCatalog
