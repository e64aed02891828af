"""Fold the stream points of a whole batch into the duration state, all customers at once.

The state of a duration meter is, per stream, the spans replayed from its events
(stream_spans); per merge key (a user), the union of its closed spans (merged_spans). The
events themselves are kept once, in the event log. A batch reads what it needs of every
touched stream in one query, replays in memory with the pure code of meters.spans, and
writes back in bulk, so in the usual case (events in order) its statement count does not
depend on how many customers or streams it touches.

A stream's latest derived row keeps the instant of its latest event (see
repository.LatestRow): a batch whose events all come after it carries the stream on from
that row alone. Otherwise (a late event, or one at the same instant, whose order against
the stored ones the row cannot tell) the stream is replayed from its raw events, read back
from the event log, one read per customer and event type.

Invariant (tests/meters/test_incremental.py, tests/meters/test_fold.py,
tests/meters/test_latest.py): the state after any sequence of batches, in any order,
equals the one replayed from all events at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.events import service as event_log
from quotameter.meters import repository as repo
from quotameter.meters.model import StreamPoint, interpret_row, span_end
from quotameter.meters.repository import LatestRow, MergeId, StreamId
from quotameter.meters.spans import US, Action, Span, StreamEvent, replay

# The end of time for a read of the event log (BIGINT's largest value).
_NEVER = 2**63 - 1


def _event_action(p: StreamPoint) -> Action:
    # Only stream events are replayed: one-event spans are kept apart (see `fold`).
    assert p.action != "span"
    return p.action


def idle_us(spec: MeterSpec) -> int | None:
    return spec.idle_timeout * US if spec.idle_timeout else None


@dataclass(slots=True)
class _Writes:
    """What a batch changes in stream_spans, and per merge key the range [lo, hi] where its
    closed spans may have changed (an open span or a mark is not merged: it widens nothing),
    the closed spans it adds, and whether it removes or shortens any."""

    rows: list[repo.SpanRow] = field(default_factory=list)  # spans to insert (repo.span_row)
    doomed: list[int] = field(default_factory=list)  # ids of derived spans to delete
    continued: list[tuple[int, int | None, int]] = field(
        default_factory=list
    )  # (id, end, last) to set
    windows: dict[MergeId, tuple[int, int]] = field(default_factory=dict)
    added: dict[MergeId, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    removed: set[MergeId] = field(default_factory=set)

    def widen(self, key: MergeId, start: int, end: int | None) -> bool:
        if end is None or end <= start:
            return False
        lo, hi = self.windows.get(key, (start, end))
        self.windows[key] = (min(lo, start), max(hi, end))
        return True

    def grow(self, key: MergeId, start: int, end: int | None) -> None:
        """A closed span is added to the merge key (an open one or a mark changes nothing)."""
        if end is not None and self.widen(key, start, end):
            self.added[key].append((start, end))

    def shrink(self, key: MergeId, start: int, end: int | None) -> None:
        """A closed span of the merge key is deleted."""
        if self.widen(key, start, end):
            self.removed.add(key)

    def add(self, sid: StreamId, merge_key: str, spans: Sequence[Span]) -> None:
        meter, customer, stream_key = sid
        for sp in spans:
            self.rows.append(
                repo.span_row(meter, customer, stream_key, merge_key, sp, explicit=False)
            )
            self.grow((meter, customer, merge_key), sp.start, sp.end)


def fold(
    conn: Connection,
    meters: Mapping[str, MeterSpec],
    grouped: Mapping[tuple[str, str], Sequence[StreamPoint]],
) -> None:
    """Fold a batch's duration contributions, grouped per (meter, customer). The batch's
    events are in the event log already (a replay reads them back with the older ones)."""
    writes = _Writes()
    by_stream: dict[StreamId, list[StreamPoint]] = defaultdict(list)
    for (meter, customer), points in grouped.items():
        for p in points:
            if p.action != "span":
                by_stream[(meter, customer, p.stream_key)].append(p)
            elif (stop := span_end(p)) > p.t:
                # A one-event span stands on its own: it is stored as is, never replayed.
                writes.rows.append(
                    repo.span_row(
                        meter,
                        customer,
                        p.stream_key,
                        p.merge_key,
                        Span(p.t, stop, stop),
                        explicit=True,
                    )
                )
                writes.grow((meter, customer, p.merge_key), p.t, stop)
    new = {
        sid: sorted(
            (StreamEvent(p.t, _event_action(p), p.order_key) for p in pts),
            key=StreamEvent.sort_key,
        )
        for sid, pts in by_stream.items()
    }
    latest = repo.latest_rows(conn, list(new))
    # Late, or at the instant of the latest stored event: replayed from the raw events.
    late = {
        sid: evs[0].t
        for sid, evs in new.items()
        if (row := latest.get(sid)) is not None and row.last >= evs[0].t
    }
    history = repo.spans_since(
        conn, {sid: (t, _closed_before(t, meters[sid[0]])) for sid, t in late.items()}
    )
    stored = _stored_events(conn, meters, {sid: history[sid][0] for sid in late})
    for sid, evs in new.items():
        merge_key, idle = by_stream[sid][0].merge_key, idle_us(meters[sid[0]])
        if sid in late:
            for span_id, start, end in history[sid][1]:
                writes.doomed.append(span_id)
                writes.shrink((sid[0], sid[1], merge_key), start, end)
            # The batch's own events are in the log too: each event is replayed once.
            events = list({e.order_key: e for e in (*stored[sid], *evs)}.values())
            tail = max(e.t for e in events)
            writes.add(sid, merge_key, _tailed(replay(events, idle), tail) or [_mark(tail)])
        else:
            _carry_on(writes, sid, merge_key, latest.get(sid), evs, idle)
    repo.replace_spans(conn, writes.doomed, writes.continued, writes.rows)
    repo.remerge(conn, writes.windows, writes.added, writes.removed)


def _closed_before(t: int, spec: MeterSpec) -> int:
    """Where to replay a stream from when no span of it began before `t`, its earliest new
    event: its stored events before then made no span (each start was closed at once by the
    idle timeout, each stop or heartbeat found it closed), and new events from `t` on can
    only keep alive a start less than an idle timeout before `t`. The stream is closed, or
    as good as closed (idle), just before the instant returned."""
    idle = idle_us(spec)
    return t if idle is None else t - idle


def _stored_events(
    conn: Connection, meters: Mapping[str, MeterSpec], since: Mapping[StreamId, int]
) -> dict[StreamId, list[StreamEvent]]:
    """The start/stop/heartbeat events of these streams stamped from `since[stream]` on, read
    from the event log: one read per customer and event type, from the earliest `since`."""
    reads: dict[tuple[str, str], int] = {}
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (meter, customer, _), lo in since.items():
        key = (customer, meters[meter].event_type)
        reads[key] = min(lo, reads.get(key, lo))
        wanted[key].add(meter)
    out: dict[StreamId, list[StreamEvent]] = defaultdict(list)
    for (customer, event_type), lo in reads.items():
        specs = [(meter, meters[meter]) for meter in sorted(wanted[(customer, event_type)])]
        for row in event_log.of_customer(conn, customer, event_type, lo, _NEVER):
            for meter, spec in specs:
                p = interpret_row(spec, customer, row)
                if not isinstance(p, StreamPoint) or p.action == "span":
                    continue
                sid = (meter, customer, p.stream_key)
                if sid in since and p.t >= since[sid]:
                    out[sid].append(StreamEvent(p.t, p.action, p.order_key))
    return out


def _carry_on(
    writes: _Writes,
    sid: StreamId,
    merge_key: str,
    row: LatestRow | None,
    evs: list[StreamEvent],
    idle: int | None,
) -> None:
    """Carry a stream on with events that all come after its stored ones (the usual case).

    If the replay carries the open span on (kept alive, or closed), its row is updated in
    place, cheaper than a delete and an insert in every index of stream_spans; otherwise it
    is deleted. With no span to write, the latest row keeps the new latest instant, or a
    mark does where there is none (or it was the open span, now gone)."""
    tail = evs[-1].t
    open_span = Span(row.start, None, row.last) if row is not None and row.is_open else None
    spans = _tailed(replay(evs, idle, open_span), tail)
    if row is not None and open_span is not None:
        if spans and spans[0].start == row.start:
            writes.continued.append((row.id, spans[0].end, spans[0].last))
            writes.grow((sid[0], sid[1], merge_key), spans[0].start, spans[0].end)
            writes.add(sid, merge_key, spans[1:])
            return
        writes.doomed.append(row.id)
    elif row is not None and not spans:
        writes.continued.append((row.id, row.end, tail))
        return
    elif row is not None and row.is_mark:
        writes.doomed.append(row.id)  # the spans to come keep the latest instant now
    writes.add(sid, merge_key, spans or [_mark(tail)])


def _tailed(spans: list[Span], tail: int) -> list[Span]:
    """The spans with the last one keeping `tail`, the stream's latest event, if it is closed
    (a closed span's extent is its end alone: its `last` says nothing else)."""
    if spans and spans[-1].end is not None:
        spans[-1] = Span(spans[-1].start, spans[-1].end, tail)
    return spans


def _mark(tail: int) -> Span:
    """The row of a stream whose events made no span after its latest one: no length, and
    `tail` as its latest event (see repository.LatestRow)."""
    return Span(tail, tail, tail)
