"""What a domain operation runs in: the caller's connection and the catalog in force.

Services take a `Context` first instead of repeating `(conn, catalog, …)`. The caller owns
both: the connection's transaction (a use case or an endpoint opens it) and the catalog it
read in that transaction. Instants stay explicit arguments: each operation is asked about
one instant (`at`, `now`), which is what keeps time an argument everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from quotameter.catalog.service import LoadedCatalog


@dataclass(frozen=True, slots=True)
class Context:
    conn: Connection
    catalog: LoadedCatalog
    # What if: customer -> a plan it is priced on for the whole of time, whatever its
    # recorded plan changes say (a hypothetical invoice; nothing is written).
    pretend: Mapping[str, str] = field(default_factory=dict)
