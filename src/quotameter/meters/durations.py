"""Fold the stream points of a whole batch into the duration state, all customers at once.

The state of a duration meter is, per stream, its points (stream_points) and the spans
replayed from them (stream_spans); per merge key (a user), the union of its closed spans
(merged_spans). A batch reads what it needs of every touched stream in one query, replays
in memory with the pure code of meters.spans, and writes back in bulk, so its statement
count does not depend on how many customers or streams it touches.

Invariant (tests/meters/test_incremental.py, tests/meters/test_fold.py): the state after
any sequence of batches, in any order, equals the one replayed from all points at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.meters import repository as repo
from quotameter.meters.model import StreamPoint, span_end
from quotameter.meters.repository import MergeId, StreamId
from quotameter.meters.spans import US, Action, Span, StreamEvent, replay


def _event_action(p: StreamPoint) -> Action:
    # Only stream events are replayed: one-event spans are kept apart (see `fold`).
    assert p.action != "span"
    return p.action


def idle_us(spec: MeterSpec) -> int | None:
    return spec.idle_timeout * US if spec.idle_timeout else None


@dataclass(slots=True)
class _Writes:
    """What a batch changes in stream_spans, and per merge key the range [lo, hi] where its
    closed spans may have changed (an open span is not merged: it widens nothing)."""

    rows: list[repo.SpanRow] = field(default_factory=list)  # spans to insert (repo.span_row)
    doomed: list[int] = field(default_factory=list)  # ids of derived spans to delete
    continued: list[tuple[int, int | None, int]] = field(
        default_factory=list
    )  # (id, end, last) to set
    windows: dict[MergeId, tuple[int, int]] = field(default_factory=dict)

    def widen(self, key: MergeId, start: int, end: int | None) -> None:
        if end is not None:
            lo, hi = self.windows.get(key, (start, end))
            self.windows[key] = (min(lo, start), max(hi, end))

    def add(self, sid: StreamId, merge_key: str, spans: Sequence[Span]) -> None:
        meter, customer, stream_key = sid
        for sp in spans:
            self.rows.append(
                repo.span_row(meter, customer, stream_key, merge_key, sp, explicit=False)
            )
            self.widen((meter, customer, merge_key), sp.start, sp.end)


def fold(
    conn: Connection,
    meters: Mapping[str, MeterSpec],
    grouped: Mapping[tuple[str, str], Sequence[StreamPoint]],
) -> None:
    """Fold a batch's duration contributions, grouped per (meter, customer)."""
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
                writes.widen((meter, customer, p.merge_key), p.t, stop)
    new = {
        sid: sorted(
            (StreamEvent(p.t, _event_action(p), p.order_key) for p in pts),
            key=StreamEvent.sort_key,
        )
        for sid, pts in by_stream.items()
    }
    # Read before the new points are stored: "late" compares them with the stored ones.
    states = repo.stream_states(conn, {sid: evs[0].sort_key() for sid, evs in new.items()})
    actions, old_spans = repo.stream_histories(
        conn, {sid: st.since for sid, st in states.items() if st.late}
    )
    repo.add_stream_points(conn, ((m, c, p) for (m, c), points in grouped.items() for p in points))
    for sid, evs in new.items():
        merge_key, state, idle = by_stream[sid][0].merge_key, states[sid], idle_us(meters[sid[0]])
        if state.late:
            # Late: replay from the start of the last span that began before the earliest new
            # event; the stream was closed just before that start, a known state to begin from.
            for span_id, start, end in old_spans[sid]:
                writes.doomed.append(span_id)
                writes.widen((sid[0], sid[1], merge_key), start, end)
            writes.add(sid, merge_key, replay([*actions[sid], *evs], idle))
        else:
            # In order (the usual case): carry on from the stream's open span, if any.
            writes.add(
                sid,
                merge_key,
                _carry_on(writes, sid, merge_key, state, replay(evs, idle, state.open_span)),
            )
    repo.replace_spans(conn, writes.doomed, writes.continued, writes.rows)
    repo.remerge(conn, writes.windows)


def _carry_on(
    writes: _Writes, sid: StreamId, merge_key: str, state: repo.StreamState, spans: list[Span]
) -> list[Span]:
    """The spans still to insert once the stream's open span is dealt with: if the replay
    carries it on (kept alive, or closed), its row is updated in place, cheaper than a delete
    and an insert in every index of stream_spans; otherwise it is deleted."""
    if state.open_id is None or state.open_span is None:
        return spans
    if spans and spans[0].start == state.open_span.start:
        writes.continued.append((state.open_id, spans[0].end, spans[0].last))
        writes.widen((sid[0], sid[1], merge_key), spans[0].start, spans[0].end)
        return spans[1:]
    writes.doomed.append(state.open_id)
    return spans
