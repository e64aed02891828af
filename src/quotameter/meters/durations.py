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

from sqlalchemy import Connection

from quotameter.catalog.model import MeterSpec
from quotameter.meters import repository as repo
from quotameter.meters.model import StreamPoint
from quotameter.meters.repository import MergeId, StreamId
from quotameter.meters.spans import US, Span, StreamEvent, replay


def idle_us(spec: MeterSpec) -> int | None:
    return spec.idle_timeout * US if spec.idle_timeout else None


class _Windows:
    """Per merge key, the range [lo, hi] where its closed spans may have changed."""

    def __init__(self) -> None:
        self.ranges: dict[MergeId, tuple[int, int]] = {}

    def widen(self, key: MergeId, start: int, end: int | None) -> None:
        if end is None:
            return  # an open span is not merged: nothing to redo for it
        lo, hi = self.ranges.get(key, (start, end))
        self.ranges[key] = (min(lo, start), max(hi, end))


def fold(conn: Connection, meters: Mapping[str, MeterSpec],
         grouped: Mapping[tuple[str, str], Sequence[StreamPoint]]) -> None:
    """Fold a batch's duration contributions, grouped per (meter, customer)."""
    windows = _Windows()
    span_rows: list[dict] = []
    by_stream: dict[StreamId, list[StreamPoint]] = defaultdict(list)
    for (meter, customer), points in grouped.items():
        for p in points:
            if p.action != "span":
                by_stream[(meter, customer, p.stream_key)].append(p)
            elif p.end > p.t:  # type: ignore[operator]
                # A one-event span stands on its own: it is stored as is, never replayed.
                span_rows.append(repo.span_row(meter, customer, p.stream_key, p.merge_key,
                                               Span(p.t, p.end, p.end), explicit=True))  # type: ignore[arg-type]
                windows.widen((meter, customer, p.merge_key), p.t, p.end)
    new = {sid: sorted((StreamEvent(p.t, p.action, p.order_key) for p in pts),  # type: ignore[arg-type]
                       key=StreamEvent.sort_key) for sid, pts in by_stream.items()}
    # Read before the new points are stored: "late" compares them with the stored ones.
    states = repo.stream_states(conn, {sid: evs[0].sort_key() for sid, evs in new.items()})
    actions, old_spans = repo.stream_histories(conn, {sid: st.since for sid, st in states.items() if st.late})
    repo.add_stream_points(conn, ((m, c, p) for (m, c), points in grouped.items() for p in points))

    doomed: list[int] = []
    continued: list[tuple[int, int | None, int]] = []
    for sid, evs in new.items():
        meter, customer, stream_key = sid
        merge_key = by_stream[sid][0].merge_key
        state, idle = states[sid], idle_us(meters[meter])
        if not state.late:
            # In order (the usual case): carry on from the stream's open span, if any.
            spans = replay(evs, idle, state.open_span)
            if state.open_id is not None and state.open_span is not None:
                if spans and spans[0].start == state.open_span.start:
                    # The open span carries on (kept alive, or closed): its row is updated
                    # in place, cheaper than a delete and an insert in every index.
                    continued.append((state.open_id, spans[0].end, spans[0].last))
                    windows.widen((meter, customer, merge_key), spans[0].start, spans[0].end)
                    spans = spans[1:]
                else:
                    doomed.append(state.open_id)
        else:
            # Late: replay from the start of the last span that began before the earliest new
            # event; the stream was closed just before that start, a known state to begin from.
            spans = replay([*actions[sid], *evs], idle)
            for span_id, start, end in old_spans[sid]:
                doomed.append(span_id)
                windows.widen((meter, customer, merge_key), start, end)
        for sp in spans:
            span_rows.append(repo.span_row(meter, customer, stream_key, merge_key, sp, explicit=False))
            windows.widen((meter, customer, merge_key), sp.start, sp.end)
    repo.replace_spans(conn, doomed, continued, span_rows)
    repo.remerge(conn, windows.ranges)
