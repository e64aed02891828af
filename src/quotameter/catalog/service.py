"""The catalog in force: stored by version, cached per process.

Applying a new document touches every domain; that is `quotameter.usecases.catalog`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import orjson
from sqlalchemy import Connection

from quotameter.catalog import repository
from quotameter.catalog.model import (
    Catalog,
    CatalogDiff,
    MeterSpec,
    catalog_to_json,
    validate_catalog,
)
from quotameter.errors import Conflict
from quotameter.wording import plural

LATEST_VERSION = "(SELECT max(version) FROM catalogs)"
"""The version in force, as an SQL scalar subquery (for one-statement probes)."""


@dataclass(frozen=True)
class LoadedCatalog:
    version: int
    spec: Catalog
    _by_type: dict[str, dict[str, MeterSpec]] = field(default_factory=dict, repr=False)

    @cached_property
    def by_type(self) -> dict[str, dict[str, MeterSpec]]:
        grouped: dict[str, dict[str, MeterSpec]] = {}
        for name, meter in self.spec.meters.items():
            grouped.setdefault(meter.event_type, {})[name] = meter
        return grouped

    def meters_for(self, event_type: str) -> dict[str, MeterSpec]:
        return self.by_type.get(event_type, {})


EMPTY = LoadedCatalog(0, Catalog())


class CatalogCache:
    """The catalog in force, re-read only when another process applied a newer version."""

    def __init__(self) -> None:
        self._loaded = EMPTY
        self._lock = threading.Lock()

    @property
    def last_known(self) -> LoadedCatalog:
        """The catalog this process loaded last, without asking the database (may be stale)."""
        return self._loaded

    def current(self, conn: Connection, version: int | None = None) -> LoadedCatalog:
        """The catalog in force; `version` when the caller already read it."""
        if version is None:
            version = repository.latest_version(conn)
        loaded = self._loaded
        if version == loaded.version:
            return loaded
        with self._lock:
            if self._loaded.version != version:
                doc = orjson.loads(repository.document(conn, version))
                self._loaded = LoadedCatalog(version, validate_catalog(doc, stored=True))
            return self._loaded


@dataclass(frozen=True)
class Applied:
    """What applying a catalog did, or for a dry run would do."""

    version: int  # the version it got (a dry run: would get)
    diff: CatalogDiff
    dropped: dict[str, dict[str, int]]  # removed customers with recorded data: kind -> how many
    applied: bool  # False for a dry run
    refused: bool  # a dry run: applying would be refused (customers with data left out, no prune)

    @property
    def changed_meters(self) -> list[str]:
        return self.diff.rebuilt_meters


class DropsRecordedCustomers(Conflict):
    """The catalog leaves out customers with recorded data; applying it anyway takes `prune`."""

    def __init__(self, dropped: dict[str, dict[str, int]]) -> None:
        super().__init__(
            f"customers: the catalog leaves out {len(dropped)} customer(s) with recorded data; "
            "apply it with prune to drop them (their records are kept)",
            errors=dropped_lines(dropped),
        )
        self.dropped = dropped


def dropped_lines(dropped: dict[str, dict[str, int]]) -> list[str]:
    """One line per customer: ``customers.acme: has 12 events, 1 key``."""
    return [
        f"customers.{customer}: has "
        + ", ".join(f"{n} {plural(kind, n)}" for kind, n in kinds.items())
        for customer, kinds in sorted(dropped.items())
    ]


def next_version(conn: Connection) -> int:
    """The version the next applied catalog gets."""
    return repository.latest_version(conn) + 1


def store(conn: Connection, version: int, catalog: Catalog, applied_us: int) -> None:
    """Store a validated catalog as `version`, in force from `applied_us`."""
    repository.add(conn, version, orjson.dumps(catalog_to_json(catalog)).decode(), applied_us)


def first_applied_us(conn: Connection) -> int | None:
    """When the first catalog was applied (None: none yet)."""
    return repository.first_applied(conn)
