"""Ingest: check each event on its own, store the good ones once, fold them into meters.

`prepare` is pure and runs before the write transaction opens (so parsing a batch overlaps
another batch's commit); `store` does the writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from quotameter.catalog.service import LoadedCatalog
from quotameter.customers import state as customer_state
from quotameter.events import repository
from quotameter.events.model import fields_of, plain_fields
from quotameter.events.repository import Row
from quotameter.meters import service as meters
from quotameter.meters.model import Contribution, EventFacts, EventRejected
from quotameter.notifications import repository as notices


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass(slots=True)
class Prepared:
    catalog_version: int
    rows: list[Row]
    found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]]
    grouped: dict[tuple[str, str], list[Contribution]]  # (meter, customer): contributions of every row
    rejected: list[dict[str, Any]]
    repeats: int
    received_us: int
    # Per customer, the latest instant its events are stamped with (a repeat's instant was
    # already counted when it was first stored, so all rows may be taken).
    horizons: dict[str, int]


def prepare(catalog: LoadedCatalog, items: list[Any], received_us: int) -> Prepared:
    """Check every event of a batch. A bad event is reported by its index, never costs the others.

    This is the per-event hot path of ingest: plain events are checked inline, and the
    contributions are grouped per meter and customer here, so `store` has no per-event work
    left when (as usual) every event of the batch is new.
    """
    customers = catalog.spec.customers
    by_type = catalog.by_type
    rows: list[Row] = []
    found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]] = {}
    grouped: dict[tuple[str, str], list[Contribution]] = {}
    rejected: list[dict[str, Any]] = []
    horizons: dict[str, int] = {}
    repeats = 0
    dumps = orjson.dumps
    for index, obj in enumerate(items):
        try:
            fields = plain_fields(obj)
            if fields is None:
                fields = fields_of(obj)
            id_, source, type_, subject, t, data = fields
            if subject not in customers:
                raise EventRejected(f"subject: unknown customer {subject!r}")
            if t is None:
                t = received_us
            specs = by_type.get(type_)
            contributions = (meters.contributions(specs, EventFacts(subject, t, f"{source}\x01{id_}", data))
                             if specs else [])
        except EventRejected as err:
            rejected.append({"index": index, "error": str(err)})
            continue
        key = (source, id_)
        if key in found:
            repeats += 1
            continue
        found[key] = (subject, contributions)
        latest = t
        for meter, contribution in contributions:
            group = grouped.get((meter, subject))
            if group is None:
                grouped[(meter, subject)] = [contribution]
            else:
                group.append(contribution)
            end = getattr(contribution, "end", None)  # a one-event span reaches past its own time
            if end is not None and end > latest:
                latest = end
        if latest > horizons.get(subject, -1):
            horizons[subject] = latest
        rows.append((source, id_, type_, subject, t, dumps(data).decode(), received_us))
    return Prepared(catalog.version, rows, found, grouped, rejected, repeats, received_us, horizons)


def store(conn: Connection, catalog: LoadedCatalog, prepared: Prepared) -> IngestResult:
    new = repository.insert_new(conn, prepared.rows)
    if new is None:  # every row was new
        grouped, touched = prepared.grouped, list(prepared.horizons)
        accepted = len(prepared.rows)
    else:
        grouped = defaultdict(list)
        for key in new:
            subject, contributions = prepared.found[key]
            for meter, contribution in contributions:
                grouped[(meter, subject)].append(contribution)
        touched = list({prepared.found[key][0] for key in new})
        accepted = len(new)
    meters.apply(conn, catalog.spec.meters, grouped)
    customer_state.bump(conn, [(c, prepared.horizons[c]) for c in touched])
    # Notices are evaluated after the commit, once for many batches (see notifications.scheduler).
    notices.mark_pending(conn, sorted(touched), prepared.received_us)
    return IngestResult(accepted, prepared.repeats + len(prepared.rows) - accepted, prepared.rejected)


def ingest(conn: Connection, catalog: LoadedCatalog, items: list[Any], received_us: int) -> IngestResult:
    """Prepare and store in one go (the write transaction is the caller's)."""
    return store(conn, catalog, prepare(catalog, items, received_us))
