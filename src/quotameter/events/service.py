"""Ingest: check each event on its own, store the good ones once, fold them into meters.

`prepare` is pure and runs before the write transaction opens (so parsing a batch overlaps
another batch's commit); `store` does the writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from quotameter.catalog.service import LoadedCatalog
from quotameter.customers import state as customer_state
from quotameter.events import repository
from quotameter.events.model import checked_us, parse_event
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
    rows: list[tuple[str, str, str, str, int, str, int]]  # in repository.COLUMNS order
    found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]]
    rejected: list[dict[str, Any]]
    repeats: int
    received_us: int
    # Per customer, the latest instant its events are stamped with (a repeat's instant was
    # already counted when it was first stored, so all rows may be taken).
    horizons: dict[str, int]


def prepare(catalog: LoadedCatalog, items: list[Any], received_us: int) -> Prepared:
    """Check every event of a batch. A bad event is reported by its index, never costs the others."""
    customers = catalog.spec.customers
    rows: list[tuple[str, str, str, str, int, str, int]] = []
    found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]] = {}
    rejected: list[dict[str, Any]] = []
    horizons: dict[str, int] = {}
    repeats = 0
    for index, obj in enumerate(items):
        try:
            ev = parse_event(obj)
            if ev.subject not in customers:
                raise EventRejected(f"subject: unknown customer {ev.subject!r}")
            t = checked_us(ev.time, "time") if ev.time is not None else received_us
            facts = EventFacts(ev.subject, t, f"{ev.source}\x01{ev.id}", ev.data)
            contributions = meters.contributions(catalog.meters_for(ev.type), facts)
        except EventRejected as err:
            rejected.append({"index": index, "error": str(err)})
            continue
        key = (ev.source, ev.id)
        if key in found:
            repeats += 1
            continue
        found[key] = (ev.subject, contributions)
        latest = t
        for _, contribution in contributions:
            end = getattr(contribution, "end", None)  # a one-event span reaches past its own time
            if end is not None and end > latest:
                latest = end
        if latest > horizons.get(ev.subject, -1):
            horizons[ev.subject] = latest
        rows.append((ev.source, ev.id, ev.type, ev.subject, t, orjson.dumps(ev.data).decode(), received_us))
    return Prepared(catalog.version, rows, found, rejected, repeats, received_us, horizons)


def store(conn: Connection, catalog: LoadedCatalog, prepared: Prepared) -> IngestResult:
    new = repository.insert_new(conn, prepared.rows)
    found = prepared.found
    batch = [(meter, subject, contribution)
             for key in new
             for subject, contributions in (found[key],)
             for meter, contribution in contributions]
    meters.apply(conn, catalog.spec.meters, batch)
    touched = {subject for subject, _ in (found[key] for key in new)}
    customer_state.bump(conn, [(c, prepared.horizons[c]) for c in touched])
    # Notices are evaluated after the commit, once for many batches (see notifications.scheduler).
    notices.mark_pending(conn, sorted(touched), prepared.received_us)
    return IngestResult(len(new), prepared.repeats + len(prepared.rows) - len(new), prepared.rejected)


def ingest(conn: Connection, catalog: LoadedCatalog, items: list[Any], received_us: int) -> IngestResult:
    """Prepare and store in one go (the write transaction is the caller's)."""
    return store(conn, catalog, prepare(catalog, items, received_us))
