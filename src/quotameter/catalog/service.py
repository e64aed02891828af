"""Catalog use cases: apply a new document, and know the one in force."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import orjson
from sqlalchemy import Connection

from quotameter.catalog import repository
from quotameter.catalog.model import Catalog, MeterSpec, catalog_to_json, validate_catalog
from quotameter.notifications import repository as notices


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
                self._loaded = LoadedCatalog(version, validate_catalog(doc))
            return self._loaded


@dataclass(frozen=True)
class Applied:
    version: int
    changed_meters: list[str]


def apply(conn: Connection, doc: object, previous: LoadedCatalog, applied_us: int) -> Applied:
    """Validate and store a whole catalog. Meters whose definition changed are rebuilt from
    the raw events, so usage always follows the definition in force."""
    from quotameter.meters import service as meters

    catalog = validate_catalog(doc)
    version = repository.latest_version(conn) + 1
    repository.add(conn, version, orjson.dumps(catalog_to_json(catalog)).decode(), applied_us)
    changed = sorted(
        name for name, spec in catalog.meters.items()
        if previous.spec.meters.get(name) != spec
    )
    for name in changed:
        meters.rebuild(conn, catalog, name)
    for gone in set(previous.spec.meters) - set(catalog.meters):
        from quotameter.meters.repository import clear_meter

        clear_meter(conn, gone)
    # Usage and limits may have moved for anyone: every customer is evaluated again (by the
    # scheduler, or before its next read), which also times its wake-ups again.
    notices.mark_pending(conn, sorted(catalog.customers), applied_us)
    return Applied(version, changed)
