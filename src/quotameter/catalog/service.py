"""The catalog in force: stored by version, cached per process.

Applying a new document touches every domain; that is `quotameter.usecases.catalog`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import orjson
from sqlalchemy import Connection

from quotameter.catalog import repository
from quotameter.catalog.model import (
    Catalog,
    CatalogDiff,
    CatalogInvalid,
    CustomerSpec,
    MeterSpec,
    catalog_to_json,
    validate_catalog,
)
from quotameter.errors import Conflict, Invalid
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


# --- customers signed up through the API ------------------------------------------------------


def in_force(conn: Connection, previous: LoadedCatalog) -> Catalog:
    """The catalog in force now: `previous` when it still is (another process may have stored
    a newer version since it was read)."""
    version = repository.latest_version(conn)
    if version == previous.version:
        return previous.spec
    if version == 0:
        return Catalog()
    return validate_catalog(orjson.loads(repository.document(conn, version)), stored=True)


def signed_up(conn: Connection) -> dict[str, int]:
    """Every customer created through the API (`POST /v1/customers`), with when (µs)."""
    return repository.signups_all(conn)


def created_us(conn: Connection, customer: str) -> int | None:
    """When the customer was signed up through the API (None: declared in a catalog only)."""
    return repository.signup_of(conn, customer)


def check_customer(catalog: Catalog, name: str, body: Mapping[str, object]) -> CustomerSpec:
    """A new customer `name` as `body` describes it, checked as the catalog checks a
    customer; Invalid naming the field (`name`, `plan`, `admins[0]`, …) and every problem."""
    doc = {
        "plans": {plan: {} for plan in catalog.plans},
        "customers": {name: dict(body)},
    }
    try:
        checked = validate_catalog(doc)
    except CatalogInvalid as err:
        errors = [_field_of(line, name) for line in err.errors]
        raise Invalid(errors[0], errors=errors if len(errors) > 1 else None) from None
    return checked.customers[name]


def _field_of(line: str, name: str) -> str:
    """``customers.acme.admins[0]: …`` -> ``admins[0]: …``; ``customers.acme: …`` -> ``name: …``."""
    prefix = f"customers.{name}"
    if line.startswith(prefix + ": "):
        return "name" + line[len(prefix) :]
    if line.startswith(prefix + "."):
        return line[len(prefix) + 1 :]
    return line


class CustomerExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"name: a customer named {name!r} exists already")


def sign_up(
    conn: Connection, current: Catalog, name: str, spec: CustomerSpec, created_us: int, now_us: int
) -> LoadedCatalog:
    """Store a new catalog version, `current` plus the customer, and list the customer as
    signed up: in the caller's transaction, taken in turn with every other catalog write
    (the caller holds the catalog lock). CustomerExists when the name is declared or signed
    up already."""
    if name in current.customers or repository.signup_of(conn, name) is not None:
        raise CustomerExists(name)
    if not repository.add_signup(conn, name, created_us):
        raise CustomerExists(name)
    catalog = current.model_copy(update={"customers": {**current.customers, name: spec}})
    version = next_version(conn)
    store(conn, version, catalog, now_us)
    return LoadedCatalog(version, catalog)


def with_signups(
    doc: object, current: Catalog, signups: Mapping[str, int]
) -> tuple[object, list[str]]:
    """`doc` (a catalog document about to be applied) with every signed-up customer it does
    not declare added as the catalog in force has it, and the names so carried. A document
    whose customers are not a mapping is left alone (it is refused anyway)."""
    if not isinstance(doc, Mapping):
        return doc, []
    declared = doc.get("customers")
    if declared is None:
        declared = {}
    if not isinstance(declared, Mapping):
        return doc, []
    carried = sorted(n for n in signups if n not in declared and n in current.customers)
    if not carried:
        return doc, []
    customers = dict(declared)
    for name in carried:
        customers[name] = current.customers[name].model_dump(mode="json", exclude_none=True)
    return {**doc, "customers": customers}, carried


def carried_reason(errors: list[str], carried: list[str]) -> list[str]:
    """Say, on an error about a carried customer, why it is in the document at all."""
    out = []
    for line in errors:
        for name in carried:
            if line.startswith(f"customers.{name}.") or line.startswith(f"customers.{name}:"):
                line += (
                    f" (customer {name!r} was signed up through the API and is kept in every "
                    "catalog that does not declare it: keep its plan, or declare the customer)"
                )
                break
        out.append(line)
    return out
