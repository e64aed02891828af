"""Catalog use cases: apply a new document, and know the one in force."""

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
    diff,
    validate_catalog,
)
from quotameter.customers import repository as customer_records
from quotameter.errors import Conflict
from quotameter.notifications import repository as notices
from quotameter.wording import plural


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


def apply(
    conn: Connection,
    doc: object,
    previous: LoadedCatalog,
    applied_us: int,
    *,
    prune: bool = False,
    dry_run: bool = False,
) -> Applied:
    """Validate and store a whole catalog. Meters whose definition changed are rebuilt from
    the raw events, so usage always follows the definition in force.

    A catalog that leaves out customers with recorded data (events, keys, invoices, grants,
    seat or plan changes, notices, settings) is refused unless `prune`: then they are dropped
    from the catalog, and their records are kept (adding one back resumes with them). A
    customer with nothing recorded is dropped without asking. `dry_run` stores nothing and
    answers what applying would do (or whether it would be refused)."""
    from quotameter.meters import service as meters

    catalog = validate_catalog(doc)
    changes = diff(previous.spec, catalog)
    found = (
        customer_records.recorded(conn, changes.customers.removed)
        if changes.customers.removed
        else {}
    )
    dropped = {customer: kinds for customer, kinds in found.items() if kinds}
    version = repository.latest_version(conn) + 1
    refused = bool(dropped) and not prune
    applied = Applied(version, changes, dropped, applied=not dry_run, refused=refused)
    if dry_run:
        return applied
    if refused:
        raise DropsRecordedCustomers(dropped)
    repository.add(conn, version, orjson.dumps(catalog_to_json(catalog)).decode(), applied_us)
    for name in changes.rebuilt_meters:
        meters.rebuild(conn, catalog, name)
    for gone in changes.meters.removed:
        from quotameter.meters.repository import clear_meter

        clear_meter(conn, gone)
    # Usage and limits may have moved for anyone: every customer is evaluated again (by the
    # scheduler, or before its next read), which also times its wake-ups again.
    notices.mark_pending(conn, sorted(catalog.customers), applied_us)
    return applied
