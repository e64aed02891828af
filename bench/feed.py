"""Live-feed ingest: a video-meeting product's mixed feed for many organizations over HTTP.

    .venv/bin/python bench/feed.py [--orgs 1000] [--events 200000] [--history 10000[,200000]]
                                   [--feed mixed|sessions] [--db sqlite|postgresql|both]

The organizations are on the demo catalog's four reference policies (70 % pooled media
minutes with per-seat allowances, 10 % audio connector, 15 % session quotas, half of those
with auto-upgrade, 5 % managed volume), with enforcement and notices as in the demo catalog.
The feed is `--events` CloudEvents in time order over the three hours before a pinned
instant `--now`: mic/camera/screen spans per member (a new stream per toggle, overlapping),
connector streams, sessions and volume deltas. Before the clock starts, `--history` events
of the same mix, spread from the start of the month to the feed, are stored through the
service, so a cost that grows with what is already stored shows.

A real server process (bench/ingest.py's launcher) runs with its notice scheduler on, and
lives the feed's time: its clock is moved to the end of each batch just before the batch is
sent (as a live product's events are stamped just before they arrive), and to `--now` when
the feed is over. `--clients` producers take the pre-serialized batches from one queue in time
order, so the server sees a live feed. A 503 is retried after its Retry-After, and counted.
The same rows are also inserted raw into a fresh database (the baseline, as ingest.py).

The run is INVALID (exit 1) unless every event is accepted and the pooled media minutes of
20 organizations, recomputed here from the events sent, equal the balances' usage at `--now`.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, make_url, text

from quotameter.context import Context

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    AUTH,
    FeedClock,
    Server,
    Workload,
    _server_options,
    check_answers,
    count_events,
    fresh_database,
    post_all,
    profiler,
    raw_insert,
    sampled,
)
from quotameter.catalog import service as catalog_service
from quotameter.catalog.model import load_yaml
from quotameter.store.engine import make_engine, retry_transient, unit_of_work
from quotameter.store.migrate import upgrade
from quotameter.timeutil import from_us, rfc3339, to_us
from quotameter.usecases import catalog as use_catalog
from quotameter.usecases.record import ingest as store_events

US = 1_000_000
MINUTE = 60 * US
FEED_SPAN = timedelta(hours=3)
DEFAULT_NOW = "2026-11-20T15:00:00Z"
SOURCE = "bench/feed"
KINDS = ("mic", "camera", "screen")
SAMPLE = 20  # organizations whose media minutes are recomputed
HISTORY_BATCH = 5000  # events per transaction when the history is stored
# Share of organizations per policy, and the same share of the events.
MIX = (("basic", 0.70), ("connector", 0.10), ("sessions", 0.15), ("pro", 0.05))
# Allowances are scaled to the run's volume (a few hours, not a month): the quantile of the
# organizations' final usage that sits exactly on the first notice threshold, so that about
# 15 % of them cross it during the run and most do not.
CROSSING_QUANTILE = 0.85


# --- the organizations -----------------------------------------------------------------------


@dataclass
class Org:
    name: str
    policy: str  # basic | connector | sessions | pro
    weight: float  # share of its policy's events (heavy-tailed: a few busy organizations)
    members: list[str] = field(default_factory=list)  # basic: about 12 users
    seats: int = 1
    auto_upgrade: bool = False


def make_orgs(n: int, feed: str, rnd: random.Random) -> list[Org]:
    policies = (
        ["sessions"] * n
        if feed == "sessions"
        else [p for p, share in MIX for _ in range(round(n * share))]
    )
    policies = (policies + ["basic"] * n)[:n]
    rnd.shuffle(policies)
    orgs = []
    for i, policy in enumerate(policies):
        org = Org(f"org-{i:04d}", policy, rnd.lognormvariate(0, 0.8))
        if policy == "basic":
            org.seats = rnd.randint(5, 45)
            org.members = [f"{org.name}/u{k}" for k in range(rnd.randint(8, 16))]
        orgs.append(org)
    sessions = [o for o in orgs if o.policy == "sessions"]
    for o in sessions[::2]:
        o.auto_upgrade = True
    return orgs


# --- the events ------------------------------------------------------------------------------

Event = tuple[int, str, str, dict[str, Any]]  # (time_us, subject, type, data)


@dataclass
class Generated:
    events: list[Event]
    spans: dict[
        str, list[tuple[int, int | None]]
    ]  # per member: (start, stop or None if open at --now)
    volume_counts: dict[str, int]  # per pro organization: volume events


def log_uniform(rnd: random.Random, lo: float, hi: float) -> float:
    return math.exp(rnd.uniform(math.log(lo), math.log(hi)))


class Generator:
    """Events for one window [lo, hi); `end` is --now: nothing is stamped at or after it."""

    def __init__(self, orgs: list[Org], rnd: random.Random, end: int) -> None:
        self.rnd, self.end = rnd, end
        self.by_policy: dict[str, list[Org]] = {}
        for o in orgs:
            self.by_policy.setdefault(o.policy, []).append(o)
        self.weights = {p: [o.weight for o in os_] for p, os_ in self.by_policy.items()}
        self.serial = 0

    def pick(self, policy: str) -> Org:
        return self.rnd.choices(self.by_policy[policy], weights=self.weights[policy])[0]

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def window(self, n: int, lo: int, hi: int, feed: str, out: Generated) -> None:
        """About n events in [lo, hi); a span that would stop past `hi` in the history stays
        inside it (stop before the feed), in the feed it stays open at --now."""
        policies = [p for p, _ in MIX if p in self.by_policy] if feed == "mixed" else ["sessions"]
        shares = [dict(MIX)[p] for p in policies]
        made = 0
        while made < n:
            made += self.one(self.rnd.choices(policies, weights=shares)[0], lo, hi, out)

    def one(self, policy: str, lo: int, hi: int, out: Generated) -> int:
        rnd, org = self.rnd, self.pick(policy)
        if policy == "sessions":
            k = self.next_serial()
            out.events.append(
                (
                    rnd.randrange(lo, hi),
                    org.name,
                    "session.created",
                    {"session": f"ses-{k}", "document": f"doc-{rnd.randrange(2400):04d}"},
                )
            )
            return 1
        if policy == "pro":
            out.events.append(
                (rnd.randrange(lo, hi), org.name, "media.volume", {"workspace": org.name})
            )
            out.volume_counts[org.name] = out.volume_counts.get(org.name, 0) + 1
            return 1
        if policy == "basic":
            member = rnd.choice(org.members)
            kind = rnd.choice(KINDS)
            length = int(log_uniform(rnd, 5, 15 * 60) * US)
            stream = f"{member}/{kind}/{self.next_serial()}"  # a new stream per toggle
            data = {"user": member, "stream": stream, "kind": kind}
            etype = "media.activity"
        else:
            length = int(log_uniform(rnd, 30, 30 * 60) * US)
            call = f"{org.name}/call-{self.next_serial()}"
            data = {"stream_id": f"{call}/p{rnd.randrange(4)}", "call": call}
            etype, member = "connector.stream", None
        start = rnd.randrange(lo, hi)
        stop: int | None = start + length
        if hi < self.end:
            start = min(start, hi - length - 1)  # history: closed before the feed begins
            start = max(start, lo)
            stop = min(start + length, hi - 1)
        elif stop >= self.end:
            stop = None  # still on at --now
        out.events.append((start, org.name, etype, {**data, "action": "start"}))
        if stop is not None:
            out.events.append((stop, org.name, etype, {**data, "action": "stop"}))
        if member is not None:
            out.spans.setdefault(member, []).append((start, stop))
        return 1 if stop is None else 2


def volume_deltas(
    events: list[Event], orgs: list[Org], counts: dict[str, int], rnd: random.Random
) -> None:
    """Give the volume events their deltas (after sorting): each workspace rises to a level
    drawn between 5 and 26 hours (25 included, notice at 90 %), with some archiving on the way."""
    target = {o.name: Decimal(rnd.randint(20, 104)) / 4 for o in orgs if o.policy == "pro"}
    level: dict[str, Decimal] = {}
    seen: dict[str, int] = {}
    for _, subject, etype, data in events:
        if etype != "media.volume":
            continue
        seen[subject] = seen.get(subject, 0) + 1
        left = counts[subject] - seen[subject]
        now_level = level.get(subject, Decimal(0))
        goal = target[subject] * seen[subject] / counts[subject]
        delta = (goal - now_level).quantize(Decimal("0.01"))
        if left > 1 and now_level > 2 and rnd.random() < 0.2:
            delta = -min(now_level, Decimal(rnd.randint(1, 4)) / 4)  # archived, caught up later
        level[subject] = now_level + delta
        data.update(
            {
                "asset": f"a{seen[subject]:05d}.mxf",
                "action": "archived" if delta < 0 else "ingested",
                "hours_delta": str(delta),
            }
        )


# --- the independent recomputation of pooled media minutes -----------------------------------


def media_minutes(
    members: Sequence[str], spans: dict[str, list[tuple[int, int | None]]], lo: int, at: int
) -> Decimal:
    """Pooled media minutes at `at` in the period starting at `lo`: per member, spans are cut
    to [lo, at) (an open span runs to `at`), merged (touching ones join), and each merged
    span is rounded up to the whole minute."""
    total = 0
    for member in members:
        cut = sorted(
            (max(a, lo), min(b if b is not None else at, at)) for a, b in spans.get(member, [])
        )
        merged: list[list[int]] = []
        for a, b in cut:
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        total += sum(-(-(b - a) // MINUTE) for a, b in merged)
    return Decimal(total)


# --- the catalog -----------------------------------------------------------------------------


def month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else 1.0


def make_catalog(orgs: list[Org], gen: Generated, lo: int, at: int) -> dict:
    """The demo catalog's meters and the plans of its four policies, for these organizations;
    allowances scaled so that some organizations cross thresholds during the run."""
    demo = load_yaml(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    plans = {
        name: demo["plans"][name]
        for name in ("basic", "connector", "sessions_100k", "sessions_200k", "pro")
    }
    basic = [o for o in orgs if o.policy == "basic"]
    per_seat = [float(media_minutes(o.members, gen.spans, lo, at)) / o.seats for o in basic]
    plans["basic"]["entitlements"]["media"]["allowance"] = {
        "per_seat": max(1, math.ceil(quantile(per_seat, CROSSING_QUANTILE) / 0.85))
    }
    sessions = {o.name: 0 for o in orgs if o.policy == "sessions"}
    for _, subject, etype, _ in gen.events:
        if etype == "session.created":
            sessions[subject] += 1
    fixed = max(
        1, math.ceil(quantile(list(map(float, sessions.values())), CROSSING_QUANTILE) / 0.9)
    )
    plans["sessions_100k"]["entitlements"]["sessions"]["allowance"] = {"fixed": fixed}
    plans["sessions_200k"]["entitlements"]["sessions"]["allowance"] = {"fixed": 2 * fixed}
    customers: dict[str, dict] = {}
    for o in orgs:
        if o.policy == "basic":
            customers[o.name] = {
                "plan": "basic",
                "seats": o.seats,
                "admins": [f"admin@{o.name}.example"],
                "timezone": "UTC",
            }
        elif o.policy == "sessions":
            customers[o.name] = {
                "plan": "sessions_100k",
                "owner": f"owner@{o.name}.example",
                "auto_upgrade": o.auto_upgrade,
            }
        else:  # billing cycles on calendar months, like the feed's period
            customers[o.name] = {
                "plan": o.policy,
                "billing_anchor": "2026-01-01",
                **({"owner": f"owner@{o.name}.example"} if o.policy == "pro" else {}),
            }
    return {"meters": demo["meters"], "plans": plans, "customers": customers}


# --- the workload ----------------------------------------------------------------------------


@dataclass
class Feed:
    orgs: list[Org]
    catalog: dict
    history: list[list[dict]]  # batches of CloudEvents, stored before the clock starts
    work: Workload  # the timed feed: bodies for HTTP, rows for the baseline
    spans: dict[str, list[tuple[int, int | None]]]
    period_lo: int
    now: datetime


def cloud_event(i: int, prefix: str, ev: Event) -> dict:
    t, subject, etype, data = ev
    return {
        "specversion": "1.0",
        "id": f"{prefix}-{i:09d}",
        "source": SOURCE,
        "type": etype,
        "subject": subject,
        "time": rfc3339(from_us(t)),
        "data": data,
    }


def make_feed(
    orgs_n: int, events: int, history: int, batch: int, feed: str, now: datetime, seed: int
) -> Feed:
    rnd = random.Random(seed)
    orgs = make_orgs(orgs_n, feed, rnd)
    end, feed_lo, period_lo = (
        to_us(now),
        to_us(now - FEED_SPAN),
        to_us(month_start(now - FEED_SPAN)),
    )
    gen = Generator(orgs, rnd, end)
    past, live = Generated([], {}, {}), Generated([], {}, {})
    # The feed draws from its own generator, so runs with different histories send the same feed.
    gen.rnd = random.Random(f"{seed}/history")
    if history:
        gen.window(history, period_lo, feed_lo, feed, past)
    gen.rnd = random.Random(f"{seed}/feed")
    gen.window(events, feed_lo, end, feed, live)
    past.events.sort(key=lambda e: e[0])
    live.events.sort(key=lambda e: e[0])
    both = Generated(past.events + live.events, {}, {})
    for g in (past, live):
        for member, spans in g.spans.items():
            both.spans.setdefault(member, []).extend(spans)
        for name, n in g.volume_counts.items():
            both.volume_counts[name] = both.volume_counts.get(name, 0) + n
    volume_deltas(both.events, orgs, both.volume_counts, rnd)
    catalog = make_catalog(orgs, both, period_lo, end)
    old = [cloud_event(i, "h", ev) for i, ev in enumerate(past.events)]
    bodies, rows, sizes = [], [], []
    for b0 in range(0, len(live.events), batch):
        chunk = [cloud_event(i, "f", ev) for i, ev in enumerate(live.events[b0 : b0 + batch], b0)]
        bodies.append(orjson.dumps(chunk))
        rows.append(
            [
                (
                    SOURCE,
                    ev["id"],
                    ev["type"],
                    ev["subject"],
                    t,
                    orjson.dumps(ev["data"]).decode(),
                    end,
                )
                for ev, (t, *_) in zip(chunk, live.events[b0 : b0 + batch], strict=True)
            ]
        )
        sizes.append(len(chunk))
    work = Workload(bodies, rows, sizes, from_us(feed_lo), now)
    return Feed(
        orgs,
        catalog,
        [old[i : i + HISTORY_BATCH] for i in range(0, len(old), HISTORY_BATCH)],
        work,
        both.spans,
        period_lo,
        now,
    )


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    database: str
    history: int
    n: int  # events in the timed feed
    raw_seconds: float = float("nan")
    raw_method: str = ""
    http_seconds: float = float("nan")
    server_cpu: float = float("nan")
    client_cpu: float = float("nan")
    history_seconds: float = float("nan")
    latencies: list[float] = field(default_factory=list)
    retries_503: int = 0
    notices: dict[str, int] = field(default_factory=dict)  # type -> count, recorded during the feed
    notices_before: int = 0  # recorded for the history, before the feed
    checked: int = 0
    pending_at_end: int = 0  # customers owing an evaluation when the last batch was answered
    catch_up_seconds: float = float("nan")  # from then until none did
    cpu_caught_up: float = float("nan")  # server CPU of the feed and of that catch-up
    problems: list[str] = field(default_factory=list)
    kept: str = ""
    largest_log: int | None = None  # SQLite: the write-ahead log's largest size during the feed


class LogWatch:
    """The largest size of a SQLite database's write-ahead log while the block runs (sampled
    every 50 ms on a thread of the bench's own)."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        self.path = Path(f"{database}-wal") if database else None
        self.largest = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _size(self) -> int:
        try:
            return self.path.stat().st_size if self.path else 0
        except FileNotFoundError:
            return 0

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            self.largest = max(self.largest, self._size())

    def __enter__(self) -> LogWatch:
        if self.path is not None:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        if self.path is not None:
            self._thread.join()
            self.largest = max(self.largest, self._size())


def prepare_database(url: str, feed: Feed) -> float:
    """Migrate, apply the catalog at the start of the period and store the history through the
    service (as POST /v1/events would, untimed); seconds spent on the history."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with unit_of_work(engine) as conn:
            use_catalog.apply(
                conn, feed.catalog, catalog_service.CatalogCache().current(conn), feed.period_lo
            )
        catalogs = catalog_service.CatalogCache()
        received = to_us(feed.now - FEED_SPAN)

        @retry_transient
        def store(items: list[dict]) -> None:
            with unit_of_work(engine) as conn:
                result = store_events(Context(conn, catalogs.current(conn)), items, received)
            if result.accepted != len(items) or result.rejected:
                raise RuntimeError(
                    f"history: {result.accepted} of {len(items)} accepted, "
                    f"first rejection: {(result.rejected or [None])[0]}"
                )

        t0 = time.perf_counter()
        for items in feed.history:
            store(items)
        return time.perf_counter() - t0
    finally:
        engine.dispose()


def scalar(url: str, sql: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def notices_by_type(url: str, since_us: int | None = None) -> dict[str, int]:
    engine = create_engine(url)
    where = f" WHERE at_us >= {since_us}" if since_us is not None else ""
    try:
        with engine.connect() as conn:
            return {
                t: int(n)
                for t, n in conn.execute(
                    text(f"SELECT type, count(*) FROM notices{where} GROUP BY type")
                )
            }
    finally:
        engine.dispose()


def wait_evaluated(url: str, timeout: float = 300.0) -> bool:
    """Wait until the scheduler has evaluated every customer whose usage changed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scalar(url, "SELECT count(*) FROM pending_evaluations") == 0:
            return True
        time.sleep(0.05)
    return False


def check_media(base: str, feed: Feed, rnd: random.Random) -> tuple[int, list[str]]:
    """Recompute the pooled media minutes of a sample and compare with the balances at --now."""
    basic = [o for o in feed.orgs if o.policy == "basic"]
    sample = rnd.sample(basic, min(SAMPLE, len(basic)))
    problems = []
    with httpx.Client(base_url=base, timeout=120, headers=AUTH) as client:
        for o in sample:
            r = client.get(
                f"/v1/customers/{o.name}/entitlements/media", params={"at": rfc3339(feed.now)}
            )
            if r.status_code != 200:
                problems.append(
                    f"GET media balance of {o.name}: HTTP {r.status_code}: {r.text[:200]}"
                )
                continue
            expected = media_minutes(o.members, feed.spans, feed.period_lo, to_us(feed.now))
            if Decimal(str(r.json()["usage"])) != expected:
                problems.append(
                    f"{o.name}: media usage {r.json()['usage']} minutes, recomputed {expected}"
                )
    return len(sample), problems


def measure(
    kind: str, feed: Feed, args: argparse.Namespace, workdir: Path, py_spy: str | None
) -> Outcome:
    out = Outcome(kind, sum(map(len, feed.history)), feed.work.n)
    print(f"[{kind}] raw insert baseline …", file=sys.stderr, flush=True)
    with fresh_database(kind, workdir, "raw") as url:
        out.raw_seconds, out.raw_method = raw_insert(kind, url, feed.work, args.pg_raw)
        if (stored := count_events(url)) != feed.work.n:
            out.problems.append(
                f"raw insert: the database holds {stored} events, expected {feed.work.n}"
            )
    with fresh_database(kind, args.keep or workdir, "feed", keep=args.keep is not None) as url:
        print(f"[{kind}] storing {out.history:,} history events …", file=sys.stderr, flush=True)
        out.history_seconds = prepare_database(url, feed)
        clock_path = workdir / f"clock-{kind}-h{out.history}"
        clock = FeedClock(clock_path, create_at=to_us(feed.now - FEED_SPAN))
        ends = [
            max(row[4] for row in rows) + 1_000 for rows in feed.work.rows
        ]  # 1 ms after a batch's last event
        server = Server(url, workdir, now=clock_path)
        try:
            server.wait_healthy()
            if not wait_evaluated(url):
                out.problems.append("the history's notices were not evaluated within 300 s")
            out.notices_before = sum(notices_by_type(url).values())
            feed_lo = to_us(feed.now - FEED_SPAN)
            print(f"[{kind}] HTTP feed: {feed.work.n:,} events …", file=sys.stderr, flush=True)
            stacks = (args.profile or workdir) / f"server-feed-{kind}-h{out.history}.stacks.txt"
            with sampled(server.proc.pid, py_spy, stacks), LogWatch(url) as wal:
                cpu0 = server.cpu_seconds()
                posted = post_all(
                    server.port,
                    feed.work.bodies,
                    args.clients,
                    before_send=lambda i: clock.move_to(ends[i]),
                )
                out.server_cpu = server.cpu_seconds() - cpu0
                # The evaluations owed when the last batch is answered are the feed's work
                # too: the time until the scheduler has made them is timed, from then.
                answered = time.monotonic()
                out.pending_at_end = scalar(url, "SELECT count(*) FROM pending_evaluations")
                if not wait_evaluated(url):
                    out.problems.append("the feed's notices were not evaluated within 300 s")
                out.catch_up_seconds = time.monotonic() - answered
                out.cpu_caught_up = server.cpu_seconds() - cpu0
            if kind == "sqlite":
                out.largest_log = wal.largest
            out.http_seconds, out.client_cpu = posted.seconds, posted.client_cpu
            out.latencies, out.retries_503 = posted.latencies, posted.retries_503
            out.problems += check_answers(posted, feed.work.sizes)
            if (stored := count_events(url)) != feed.work.n + out.history:
                out.problems.append(
                    f"the database holds {stored} events, expected {feed.work.n + out.history}"
                )
            clock.move_to(to_us(feed.now))
            if not wait_evaluated(url):
                out.problems.append("the feed's notices were not evaluated within 300 s")
            out.notices = notices_by_type(url, since_us=feed_lo)
            out.checked, problems = check_media(server.base, feed, random.Random(args.seed))
            out.problems += problems
        except Exception as err:
            out.problems.append(f"{type(err).__name__}: {err}")
        finally:
            server.stop()
        if out.problems:
            out.problems.append(f"server log (tail):\n{server.log_tail()}")
        if args.keep is not None:
            out.kept = url
    return out


# --- the report ------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    xs = sorted(v for v in values if not math.isnan(v))
    return xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)] * 1000 if xs else float("nan")


def report(
    outcomes: list[Outcome], feed: Feed, args: argparse.Namespace, load: tuple[float, ...]
) -> None:
    opts = _server_options()
    policies = {p: sum(o.policy == p for o in feed.orgs) for p, _ in MIX}
    types: dict[str, int] = {}
    for body in feed.work.bodies:
        for ev in orjson.loads(body):
            types[ev["type"]] = types.get(ev["type"], 0) + 1
    print()
    print(
        f"quotameter live feed: {feed.work.n:,} events over the 3 h before {rfc3339(feed.now)} "
        f"({args.feed}), "
        f"{len(feed.orgs):,} organizations "
        f"({', '.join(f'{p} {k}' for p, k in policies.items() if k)})"
    )
    print(
        f"events: {', '.join(f'{t} {k:,}' for t, k in sorted(types.items()))}; batches of "
        f"{args.batch}, "
        f"{args.clients} producers in time order; allowances: {allowances(feed, policies)}"
    )
    print(
        f"server: 1 uvicorn process (loop={opts['loop']}, http={opts['http']}), clock follows the "
        "feed, scheduler on; "
        f"{os.cpu_count()} CPUs shared; load average before: {' '.join(f'{x:.2f}' for x in load)}"
    )
    print()
    head = (
        "database",
        "history",
        "HTTP ev/s",
        "+evals ev/s",
        "raw ev/s",
        "HTTP/raw",
        "p50 ms",
        "p99 ms",
        "503s",
        "notices",
        "checked",
        "valid",
    )
    lines = []
    for o in outcomes:
        http_eps, raw_eps = o.n / o.http_seconds, o.n / o.raw_seconds
        lines.append(
            (
                o.database,
                f"{o.history:,}",
                f"{http_eps:,.0f}",
                f"{o.n / (o.http_seconds + o.catch_up_seconds):,.0f}",
                f"{raw_eps:,.0f}",
                f"{http_eps / raw_eps:.4f}",
                f"{pct(o.latencies, 50):,.0f}",
                f"{pct(o.latencies, 99):,.0f}",
                str(o.retries_503),
                str(sum(o.notices.values())),
                f"{o.checked}/{SAMPLE}" if o.checked else "n/a",
                "INVALID" if o.problems else "ok",
            )
        )
    widths = [max(len(r[i]) for r in (head, *lines)) for i in range(len(head))]
    for row in (head, *lines):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print()
    for o in outcomes:
        print(
            f"{o.database} history {o.history:,}: HTTP {o.http_seconds:.1f} s wall, server CPU "
            f"{o.server_cpu:.1f} s "
            f"({o.server_cpu / o.n * 1e6:,.0f} us/event), client CPU {o.client_cpu:.1f} s; raw "
            f"{o.raw_seconds:.2f} s "
            f"via {o.raw_method}; history stored in {o.history_seconds:.1f} s (untimed), "
            f"{o.notices_before} notices before the feed"
        )
        print(
            f"  evaluations: {o.pending_at_end} customers owed one when the last batch was "
            f"answered, all evaluated {o.catch_up_seconds:.2f} s later; counting that catch-up, "
            f"{o.n / (o.http_seconds + o.catch_up_seconds):,.0f} ev/s and server CPU "
            f"{o.cpu_caught_up:.1f} s ({o.cpu_caught_up / o.n * 1e6:,.0f} us/event)"
        )
        if o.largest_log is not None:
            print(f"  write-ahead log: at most {o.largest_log / 2**20:,.1f} MiB during the feed")
        print(
            "  notices during the feed: "
            f"{', '.join(f'{t} {k}' for t, k in sorted(o.notices.items())) or 'none'}"
        )
        if o.kept:
            print(f"  database kept: {o.kept}")
    by_db: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_db.setdefault(o.database, []).append(o)
    for db, runs in by_db.items():
        if len(runs) > 1:
            a, b = runs[0], runs[-1]
            print(
                f"{db}: per-event cost with history {b.history:,} / with {a.history:,}: "
                f"{b.http_seconds / a.http_seconds:.2f} (wall), {b.server_cpu / a.server_cpu:.2f} "
                "(server CPU)"
            )
    for o in outcomes:
        for p in o.problems[:12]:
            print(f"INVALID {o.database} history {o.history:,}: {p}")


def allowances(feed: Feed, policies: dict[str, int]) -> str:
    """The scaled allowances of the plans some organization is on."""
    shown = []
    for policy, plan, feature in (
        ("basic", "basic", "media"),
        ("sessions", "sessions_100k", "sessions"),
    ):
        if policies.get(policy):
            allowance = feed.catalog["plans"][plan]["entitlements"][feature]["allowance"]
            shown.append(f"{plan} " + ", ".join(f"{k} {v}" for k, v in allowance.items()))
    return "; ".join(shown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=1000, help="organizations (default 1000)")
    parser.add_argument(
        "--events", type=int, default=200_000, help="events in the timed feed (default 200000)"
    )
    parser.add_argument(
        "--history",
        default="10000",
        help="events stored before the feed, or a list (10000,200000) to run each and compare",
    )
    parser.add_argument("--feed", choices=("mixed", "sessions"), default="mixed")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--batch", type=int, default=1000, help="events per request (default 1000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent producers (default 4)")
    parser.add_argument(
        "--now",
        default=DEFAULT_NOW,
        help=f"the end of the feed, where the balances are checked (default {DEFAULT_NOW})",
    )
    parser.add_argument("--pg-raw", choices=("executemany", "copy"), default="executemany")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the database after the run (SQLite: a file in DIR; PostgreSQL: the database, "
        "its URL printed), for bench/check.py --database",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample the server with py-spy, as ingest.py"
    )
    args = parser.parse_args(argv)
    try:
        histories = [int(h) for h in args.history.split(",")]
    except ValueError:
        parser.error("--history takes whole numbers separated by commas")
    if min(args.orgs, args.events, args.batch, args.clients) < 1 or min(histories) < 0:
        parser.error(
            "--orgs, --events, --batch and --clients must be positive, --history not negative"
        )
    now = datetime.fromisoformat(args.now)
    if now.tzinfo is None:
        parser.error("--now needs a UTC offset")
    now = now.astimezone(UTC)
    if (now - FEED_SPAN).day == 1 and (now - FEED_SPAN).hour < 12:
        parser.error(
            "--now must leave room for a history between the start of its month and the feed"
        )
    py_spy = profiler(parser, args.profile)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    load = os.getloadavg()
    outcomes, feed = [], None
    with tempfile.TemporaryDirectory(prefix="quotameter-feed-") as tmp:
        for history in histories:
            print(
                f"generating {args.events:,} events (+{history:,} history) for {args.orgs:,} "
                "organizations …",
                file=sys.stderr,
                flush=True,
            )
            feed = make_feed(args.orgs, args.events, history, args.batch, args.feed, now, args.seed)
            outcomes += [measure(kind, feed, args, Path(tmp), py_spy) for kind in kinds]
    assert feed is not None
    report(outcomes, feed, args, load)
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
