"""Record usage: check each event on its own, store the good ones once, fold them into meters.

`prepare` is pure and runs before the write transaction opens (so parsing a batch overlaps
another batch's commit); `store` does the writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from quotameter.catalog.service import LoadedCatalog
from quotameter.context import Context
from quotameter.customers import state as customer_state
from quotameter.events import service as event_log
from quotameter.events.model import EventRejected, data_unwritable, fields_of, plain_fields
from quotameter.events.service import Row
from quotameter.invoices import service as invoices
from quotameter.invoices.model import closed_reason
from quotameter.meters import service as meters
from quotameter.meters.model import CONSUME_SOURCE, Contribution, EventFacts
from quotameter.notifications import scheduler


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
    grouped: dict[
        tuple[str, str], list[Contribution]
    ]  # (meter, customer): contributions of every row
    rejected: list[dict[str, Any]]
    repeats: int
    received_us: int
    # Per customer, the latest instant its events are stamped with (a repeat's instant was
    # already counted when it was first stored, so all rows may be taken).
    horizons: dict[str, int]
    indexes: list[int] = field(default_factory=list)  # each row's index in the batch
    # Per customer, the earliest instant its events touch (a one-event span reaches back
    # to its start): compared with what is invoiced already.
    earliest: dict[str, int] = field(default_factory=dict)


def prepare(
    catalog: LoadedCatalog, items: list[Any], received_us: int, *, consume: bool = False
) -> Prepared:
    """Check every event of a batch. A bad event is reported by its index, never costs the others.

    This is the per-event hot path of ingest: plain events are checked inline, and the
    contributions are grouped per meter and customer here, so `store` has no per-event work
    left when (as usual) every event of the batch is new.

    The source CONSUME_SOURCE is consume's own (`consume=True`): from anyone else such an
    event could take a consume's id before it is made, or count as many units.
    """
    customers = catalog.spec.customers
    by_type = catalog.by_type
    rows: list[Row] = []
    found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]] = {}
    grouped: dict[tuple[str, str], list[Contribution]] = {}
    rejected: list[dict[str, Any]] = []
    horizons: dict[str, int] = {}
    earliest: dict[str, int] = {}
    indexes: list[int] = []
    repeats = 0
    dumps = orjson.dumps
    for index, obj in enumerate(items):
        try:
            fields = plain_fields(obj)
            if fields is None:
                fields = fields_of(obj)
            id_, source, type_, subject, t, data = fields
            if source == CONSUME_SOURCE and not consume:
                raise EventRejected(f"source: {CONSUME_SOURCE!r} is reserved for consume")
            if subject not in customers:
                raise EventRejected(f"subject: unknown customer {subject!r}")
            if t is None:
                t = received_us
            try:
                text = dumps(
                    data
                ).decode()  # the meters look into data only once it is known to be writable
            except orjson.JSONEncodeError as err:
                raise EventRejected(data_unwritable(data, err)) from None
            specs = by_type.get(type_)
            contributions = (
                meters.contributions(specs, EventFacts(subject, t, f"{source}\x01{id_}", data))
                if specs
                else []
            )
        except EventRejected as err:
            rejected.append({"index": index, "error": str(err)})
            continue
        key = (source, id_)
        if key in found:
            repeats += 1
            continue
        found[key] = (subject, contributions)
        latest = first = t
        for meter, contribution in contributions:
            group = grouped.get((meter, subject))
            if group is None:
                grouped[(meter, subject)] = [contribution]
            else:
                group.append(contribution)
            end = getattr(contribution, "end", None)  # a one-event span reaches past its own time
            if end is not None and end > latest:
                latest = end
            if contribution.t < first:
                first = contribution.t
        if latest > horizons.get(subject, -1):
            horizons[subject] = latest
        if first < earliest.get(subject, first + 1):
            earliest[subject] = first
        rows.append((source, id_, type_, subject, t, text, received_us))
        indexes.append(index)
    return Prepared(
        catalog.version,
        rows,
        found,
        grouped,
        rejected,
        repeats,
        received_us,
        horizons,
        indexes,
        earliest,
    )


def _without_invoiced(ctx: Context, prepared: Prepared) -> Prepared:
    """The batch without the events stamped inside a finalized invoice's period, each
    reported by its index; one query per batch, and none of this work when nothing is closed."""
    conn = ctx.conn
    invoices.hold_open(conn, list(prepared.earliest))
    through = invoices.finalized_through_many(conn, list(prepared.earliest))
    closed = {c for c, first in prepared.earliest.items() if c in through and first < through[c]}
    if not closed:
        return prepared
    periods = {c: invoices.invoiced_periods(conn, c) for c in closed}
    rows: list[Row] = []
    indexes: list[int] = []
    rejected = list(prepared.rejected)
    repeats = prepared.repeats
    kept_found: dict[tuple[str, str], tuple[str, list[tuple[str, Contribution]]]] = {}
    for row, index in zip(prepared.rows, prepared.indexes, strict=True):
        source, id_, _, subject, t, _, _ = row
        entry = prepared.found[(source, id_)]
        touched = min([t, *(c.t for _, c in entry[1])])
        if subject in closed and touched < through[subject]:
            if event_log.exists(conn, source, id_):  # a repeat stays a duplicate, never an error
                repeats += 1
            else:
                rejected.append(
                    {
                        "index": index,
                        "error": closed_reason(
                            "time",
                            subject,
                            touched,
                            periods[subject],
                            through[subject],
                            "usage there can no longer change",
                        ),
                    }
                )
            continue
        rows.append(row)
        indexes.append(index)
        kept_found[(source, id_)] = entry
    grouped: dict[tuple[str, str], list[Contribution]] = defaultdict(list)
    horizons: dict[str, int] = {}
    for subject, contributions in kept_found.values():
        for meter, contribution in contributions:
            grouped[(meter, subject)].append(contribution)
    for row in rows:
        subject, t = row[3], row[4]
        latest = max(
            [t, *(getattr(c, "end", None) or c.t for _, c in kept_found[(row[0], row[1])][1])]
        )
        horizons[subject] = max(horizons.get(subject, -1), latest)
    rejected.sort(key=lambda r: r["index"])
    return Prepared(
        prepared.catalog_version,
        rows,
        kept_found,
        dict(grouped),
        rejected,
        repeats,
        prepared.received_us,
        horizons,
        indexes,
        {},
    )


def store(ctx: Context, prepared: Prepared) -> IngestResult:
    conn, catalog = ctx.conn, ctx.catalog
    prepared = _without_invoiced(ctx, prepared)
    new = event_log.insert_new(conn, prepared.rows)
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
    scheduler.note_batch(ctx, grouped, touched, prepared.received_us)
    return IngestResult(
        accepted, prepared.repeats + len(prepared.rows) - accepted, prepared.rejected
    )


def ingest(ctx: Context, items: list[Any], received_us: int) -> IngestResult:
    """Prepare and store in one go (the write transaction is the caller's)."""
    catalog = ctx.catalog
    return store(ctx, prepare(catalog, items, received_us))
