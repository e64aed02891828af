"""Ingest: validate each event on its own, store the good ones once, fold them into meters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from quotameter.catalog.service import LoadedCatalog
from quotameter.events import repository
from quotameter.events.model import checked_us, parse_event
from quotameter.meters import service as meters
from quotameter.meters.model import Contribution, EventFacts, EventRejected


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def ingest(conn: Connection, catalog: LoadedCatalog, items: list[Any], received_us: int) -> IngestResult:
    """Take a batch. A bad event is reported by its index and never costs the others."""
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    pending: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]] = {}
    for index, obj in enumerate(items):
        try:
            ev = parse_event(obj)
            if ev.subject not in catalog.spec.customers:
                raise EventRejected(f"subject: unknown customer {ev.subject!r}")
            t = checked_us(ev.time, "time") if ev.time is not None else received_us
            facts = EventFacts(ev.subject, t, f"{ev.source}\x01{ev.id}", ev.data)
            found = meters.contributions(catalog.meters_for(ev.type), ev.type, facts)
        except EventRejected as err:
            result.rejected.append({"index": index, "error": str(err)})
            continue
        key = (ev.source, ev.id)
        if key in pending:
            result.duplicates += 1
            continue
        pending[key] = (ev.subject, found)
        rows.append({"source": ev.source, "event_id": ev.id, "type": ev.type, "subject": ev.subject,
                     "time_us": t, "data": orjson.dumps(ev.data).decode(), "received_us": received_us})
    new = repository.insert_new(conn, rows)
    result.accepted = len(new)
    result.duplicates += len(rows) - len(new)
    meters.apply(conn, catalog.spec.meters, (
        (meter, subject, contribution)
        for key in new
        for subject, found in (pending[key],)
        for meter, contribution in found
    ))
    return result
