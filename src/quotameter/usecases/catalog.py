"""Apply a catalog: validate it, store it, rebuild the meters it redefines, and have every
customer evaluated again."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from quotameter.catalog import service as catalogs
from quotameter.catalog.model import CatalogInvalid, diff, validate_catalog
from quotameter.catalog.service import Applied, DropsRecordedCustomers, LoadedCatalog
from quotameter.customers import service as customers
from quotameter.events import service as event_log
from quotameter.grants import service as grants
from quotameter.invoices import service as invoices
from quotameter.keys import service as keys
from quotameter.meters import service as meters
from quotameter.notifications import service as notices
from quotameter.store.engine import lock_keys

__all__ = ["Applied", "DropsRecordedCustomers", "apply"]


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
    answers what applying would do (or whether it would be refused).

    Customers signed up through the API (`POST /v1/customers`) are kept: each one the
    document does not declare is carried into it as the catalog in force has it (a
    declaration in the document wins). A carried customer whose plan the document removes
    makes it invalid (`customers.<name>.plan`)."""
    lock_keys(conn, ["catalog"])  # applies and sign-ups take turns (reentrant: a caller's too)
    doc, carried = catalogs.with_signups(
        doc, catalogs.in_force(conn, previous), catalogs.signed_up(conn)
    )
    try:
        catalog = validate_catalog(doc)
    except CatalogInvalid as err:
        raise CatalogInvalid(catalogs.carried_reason(err.errors, carried)) from None
    changes = diff(previous.spec, catalog)
    found = recorded(conn, changes.customers.removed) if changes.customers.removed else {}
    dropped = {customer: kinds for customer, kinds in found.items() if kinds}
    version = catalogs.next_version(conn)
    refused = bool(dropped) and not prune
    applied = Applied(version, changes, dropped, applied=not dry_run, refused=refused)
    if dry_run:
        return applied
    if refused:
        raise DropsRecordedCustomers(dropped)
    catalogs.store(conn, version, catalog, applied_us)
    for name in changes.rebuilt_meters:
        meters.rebuild(conn, catalog, name)
    for gone in changes.meters.removed:
        meters.clear(conn, gone)
    # Usage and limits may have moved for anyone: every customer is evaluated again (by the
    # scheduler, or before its next read), which also times its wake-ups again.
    notices.mark_pending(conn, sorted(catalog.customers), applied_us)
    return applied


def recorded(conn: Connection, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """For each customer, how many of each kind of record it has (kinds with none left out):
    events, active keys, invoices, grants, seat and plan changes, notices, settings changes."""
    changes = customers.recorded(conn, names)
    counts = {
        "event": event_log.count_by_customer(conn, names),
        "key": keys.count_by_customer(conn, names),
        "invoice": invoices.count_by_customer(conn, names),
        "grant": grants.count_by_customer(conn, names),
        "seat change": changes["seat change"],
        "plan change": changes["plan change"],
        "notice": notices.count_by_customer(conn, names),
        "settings change": changes["settings change"],
    }
    return {
        name: {kind: per[name] for kind, per in counts.items() if per.get(name)} for name in names
    }
