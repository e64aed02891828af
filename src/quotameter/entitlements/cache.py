"""Reuse a computed balance while nothing it depends on can have changed.

A balance computed at instant t stays exact for any later instant of the same period when:
- the catalog version and the customer's change counter (`customer_state.version`, bumped
  in the same transaction as every event, grant, seat, plan or settings change) are the
  ones read before computing it — so no write has committed since;
- nothing the customer has is stamped after t (`horizon_us` ≤ t): no future-dated event,
  seat change or grant can enter between t and the later instant.
Then only an open media stream moves the balance, by time alone: for a duration meter with
open streams the entry keeps a snapshot of the meter (`meters.service.snapshot`: its open
streams and the closed spans they may join, read once), which gives the usage at the later
instant in memory, exactly as a read would; the allowance, grants and limits stay.
Reading the counter *before* the data makes a race safe: a write that lands in between is
tagged with the older counter, so the next read recomputes.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.catalog.service import LoadedCatalog
from quotameter.context import Context
from quotameter.customers import state
from quotameter.entitlements.model import with_usage
from quotameter.entitlements.service import Balance, balance
from quotameter.meters import service as meters
from quotameter.meters.spans import Snapshot
from quotameter.timeutil import to_us


@dataclass(frozen=True, slots=True)
class _Entry:
    catalog_version: int
    version: int
    computed_us: int
    period_end_us: int
    balance: Balance
    growing: tuple[MeterSpec, Snapshot] | None  # the meter's open streams: usage moves with time

    def at(self, at: datetime, at_us: int) -> Balance:
        if self.growing is None:
            return dataclasses.replace(self.balance, at=at)
        spec, snap = self.growing
        usage = meters.snapshot_usage(spec, snap, at_us)
        return dataclasses.replace(
            self.balance, at=at, standing=with_usage(self.balance.standing, usage)
        )


class BalanceCache:
    def __init__(self, size: int = 10_000) -> None:
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size
        self.hits = 0

    def balance(
        self,
        conn: Connection,
        catalog: LoadedCatalog,
        customer: str,
        feature: str,
        at: datetime,
        known: tuple[int, int] | None = None,
    ) -> Balance:
        """`known`: the customer's (version, horizon) when the caller already read them."""
        at_us = to_us(at)
        version, horizon = known if known is not None else state.read(conn, customer)
        hit = self.lookup(customer, feature, at, catalog.version, version)
        if hit is not None:
            return hit
        fresh = balance(Context(conn, catalog), customer, feature, at)
        if horizon <= at_us:
            key = (customer, feature)
            entry = _Entry(
                catalog.version,
                version,
                at_us,
                to_us(fresh.period.end),
                fresh,
                self._growing(Context(conn, catalog), fresh, at_us),
            )
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return fresh

    def lookup(
        self, customer: str, feature: str, at: datetime, catalog_version: int, version: int
    ) -> Balance | None:
        """The cached balance if it is still exact at `at` for these versions; no I/O."""
        entry = self._entries.get((customer, feature))
        at_us = to_us(at)
        if (
            entry is not None
            and entry.catalog_version == catalog_version
            and entry.version == version
            and entry.computed_us <= at_us < entry.period_end_us
        ):
            self.hits += 1
            return entry.at(at, at_us)
        return None

    @staticmethod
    def _growing(ctx: Context, b: Balance, at_us: int) -> tuple[MeterSpec, Snapshot] | None:
        conn, catalog = ctx.conn, ctx.catalog
        spec = catalog.spec.meters[b.meter]
        if spec.aggregation != "duration" or not meters.any_open_span(conn, b.meter, b.customer):
            return None
        return spec, meters.snapshot(
            conn, spec, b.meter, b.customer, to_us(b.period.start), to_us(b.period.end), at_us
        )
