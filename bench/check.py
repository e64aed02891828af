"""Entitlement checks over HTTP: latency at a fixed arrival rate, and throughput against a
trivial endpoint.

    .venv/bin/python bench/check.py [--db sqlite|postgresql] [--open-loop 1000] [--seconds 10]
    .venv/bin/python bench/check.py --database URL [--now 2026-11-20T15:00:00Z]

(URL: any database, e.g. one that feed.py --keep left behind.)

One real server process (bench/ingest.py's launcher). By default it serves a fresh
database with the demo catalog and a month of usage for a pooled-media organization
(per-seat allowance, a top-up, seat changes) and a session-quota customer; with
`--database` it serves an existing database instead, with its clock pinned at `--now`.
The requests are `POST /v1/customers/{c}/entitlements/{feature}/check` spread over every
customer of the catalog in force and every feature of its plan, with a few amounts.

Three measurements:

- open loop (`--open-loop RATE`, requests/s): the requests are sent at fixed scheduled
  instants whatever the answers, for `--seconds`; a request waits for a free connection when
  all are busy, and its latency runs from its scheduled instant, so queueing counts
  (no coordinated omission). Reports p50/p90/p99/max, the achieved rate and errors.
  Target: p99 <= 5 ms at 1,000 requests/s.
- sustained throughput (closed loop, `--clients` connections each sending its next request
  on the previous answer) of the check against `GET /healthz` (no database, no domain work).
  Target: check >= 0.7 x /healthz.
- p50 latency for one client (closed loop, one connection), check and /healthz.

The load generator is a small asyncio client on raw sockets (uvloop when installed):
Debian has `wrk` but not `wrk2`, and wrk has no fixed arrival rate. With `--client wrk`
(and wrk on PATH) the closed-loop throughput is measured by wrk instead, which leaves more
of the two cores to the server. Exit 1 when any request failed (an invalid run), else 0:
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ingest import AUTH, BENCH_KEY, Server, fresh_database
from support import demo_catalog

TARGET_P99_MS = 5.0
TARGET_RATIO = 0.7
AMOUNTS = (1, 5, 30, 120)
DEFAULT_FEED_NOW = "2026-11-20T15:00:00Z"  # feed.py's default --now


# --- the fresh database's usage --------------------------------------------------------------


def load(base: str, now: datetime) -> None:
    c = httpx.Client(base_url=base, timeout=60, headers=AUTH)
    assert c.put("/v1/catalog", json=demo_catalog()).status_code == 200
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    events = []
    for i in range(2000):  # 2000 mic spans of 1 to 3 minutes over the month, 20 users
        t = start + timedelta(minutes=17 * i)
        if t + timedelta(minutes=4) >= now:
            break  # only the past: data stamped in the future rightly keeps balances uncached
        user = f"u{i % 20}"
        for action, when in (("start", t), ("stop", t + timedelta(seconds=60 + i % 120))):
            events.append(
                {
                    "specversion": "1.0",
                    "id": f"m{i}{action}",
                    "source": "bench",
                    "type": "media.activity",
                    "subject": "acme",
                    "time": when.isoformat(),
                    "data": {
                        "user": user,
                        "stream": f"{user}/mic",
                        "kind": "mic",
                        "action": action,
                    },
                }
            )
    for i in range(5000):
        events.append(
            {
                "specversion": "1.0",
                "id": f"s{i}",
                "source": "bench",
                "type": "session.created",
                "subject": "docs",
                "time": (start + (now - start) * i / 5000).isoformat(),
                "data": {},
            }
        )
    for i in range(0, len(events), 1000):
        assert c.post("/v1/events", json=events[i : i + 1000]).json()["rejected"] == []
    c.patch(
        "/v1/customers/acme",
        json={"seats": 14, "effective_at": (start + timedelta(days=3)).isoformat()},
    )
    c.post("/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "bench-topup"})
    c.close()


def check_targets(base: str) -> list[tuple[str, bytes]]:
    """(path, body) of a check for every customer and feature of the catalog in force."""
    with httpx.Client(base_url=base, timeout=60, headers=AUTH) as c:
        r = c.get("/v1/catalog")
        r.raise_for_status()
        doc = r.json()
    pairs = [
        (customer, feature)
        for customer, spec in sorted(doc["customers"].items())
        for feature in sorted(doc["plans"][spec["plan"]]["entitlements"])
    ]
    random.Random(1).shuffle(pairs)  # neighbours in the schedule are different customers
    return [
        (
            f"/v1/customers/{customer}/entitlements/{feature}/check",
            orjson.dumps({"amount": AMOUNTS[i % 4]}),
        )
        for i, (customer, feature) in enumerate(pairs)
    ]


# --- a raw-socket HTTP/1.1 client ------------------------------------------------------------


def raw_request(method: str, path: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BENCH_KEY}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


class Conn:
    """One keep-alive connection; `exchange` sends one request and reads its whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)  # the server's JSON answers all carry a length
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Run:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)
    sent_rate: float = float("nan")  # open loop: requests sent per second
    lags: list[float] = field(
        default_factory=list
    )  # open loop: how late each request left its schedule, seconds
    client_cpu: float = 0.0  # CPU seconds of the load generator
    reported: dict[int, float] = field(
        default_factory=dict
    )  # percentile -> ms, when the generator (wrk) gives only these
    count: int = 0  # answers, when there are no latency samples

    def ms(self, p: int) -> float:
        return self.reported[p] if p in self.reported else pct(self.latencies, p)

    @property
    def rate(self) -> float:
        return (self.count or len(self.latencies)) / self.seconds if self.seconds else float("nan")


def run_async(main: Callable[[], Awaitable[Run]]) -> Run:
    with no_collector_pauses():
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.run(main())
        return asyncio.run(main())


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """The generator's own cycle collector off while it measures: a full collection of this
    process takes 30-40 ms, which stalled sending and reading and showed as the server's
    latency (reference counting still frees what a run drops)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def open_loop(
    port: int, requests: list[bytes], rate: float, seconds: float, connections: int = 64
) -> Run:
    """Send request i at t0 + i / rate, whatever the answers; latency from that instant."""

    async def main() -> Run:
        out = Run()
        cpu0 = time.process_time()
        idle: asyncio.Queue[Conn] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await Conn.open(port))
        opened = connections

        async def acquire() -> Conn:
            nonlocal opened
            if idle.empty() and opened < 4 * connections:
                opened += 1  # all busy: another connection, as a client of many users would open
                return await Conn.open(port)
            return await idle.get()

        async def one(i: int, scheduled: float) -> None:
            conn = await acquire()
            try:
                status = await conn.exchange(requests[i % len(requests)])
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as err:
                out.errors.append(f"{type(err).__name__}: {err}")
                conn.close()
                conn = await Conn.open(port)
            else:
                out.latencies.append(time.perf_counter() - scheduled)
                if status != 200:
                    out.errors.append(f"HTTP {status}")
            idle.put_nowait(conn)

        n = max(1, round(rate * seconds))
        tasks = []
        t0 = (
            time.perf_counter() + 0.05
        )  # perf_counter: uvloop's loop.time() counts whole milliseconds
        for i in range(n):
            scheduled = t0 + i / rate
            if (delay := scheduled - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            out.lags.append(max(0.0, time.perf_counter() - scheduled))
            tasks.append(asyncio.create_task(one(i, scheduled)))
        out.sent_rate = n / max(time.perf_counter() - t0, 1e-9)
        await asyncio.gather(*tasks)
        out.seconds = time.perf_counter() - t0
        out.client_cpu = time.process_time() - cpu0
        while not idle.empty():
            idle.get_nowait().close()
        return out

    return run_async(main)


def closed_loop(
    port: int, requests: list[bytes], clients: int, seconds: float, count: int | None = None
) -> Run:
    """`clients` connections, each sending its next request as soon as the last is answered;
    for `seconds`, or until `count` requests were sent."""

    async def main() -> Run:
        out = Run()
        conns = [await Conn.open(port) for _ in range(clients)]
        t0 = time.perf_counter()
        end = t0 + seconds

        async def worker(k: int, conn: Conn) -> None:
            i = k
            while (t := time.perf_counter()) < end and (count is None or i < count):
                status = await conn.exchange(requests[i % len(requests)])
                out.latencies.append(time.perf_counter() - t)
                if status != 200:
                    out.errors.append(f"HTTP {status}")
                i += clients

        await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
        out.seconds = time.perf_counter() - t0
        for c in conns:
            c.close()
        return out

    return run_async(main)


def alternating(
    port: int, kinds: tuple[list[bytes], ...], clients: int, seconds: float
) -> list[Run]:
    """Closed-loop runs of each kind of request, in alternating one-second slices: a machine
    whose load drifts (other processes) then weighs on both alike, and the ratio holds."""
    runs = [Run() for _ in kinds]
    for _ in range(max(1, round(seconds))):
        for run, requests in zip(runs, kinds, strict=True):
            part = closed_loop(port, requests, clients, 1.0)
            run.seconds += part.seconds
            run.latencies += part.latencies
            run.errors += part.errors
    return runs


def wrk(
    port: int, targets: list[tuple[str, bytes]] | None, clients: int, seconds: float, tmp: Path
) -> Run:
    """Closed-loop throughput measured by wrk (two threads); latencies only as p50/p99."""
    script = tmp / "wrk.lua"
    lines = [
        f'wrk.headers["Authorization"] = "Bearer {BENCH_KEY}"',
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if targets:
        lines.append(
            "local reqs = {" + ", ".join(f'{{"{p}", [[{b.decode()}]]}}' for p, b in targets) + "}"
        )
        lines.append("local i = 0")
        lines.append(
            "request = function() i = i + 1; local r = reqs[i % #reqs + 1]; "
            'return wrk.format("POST", r[1], nil, r[2]) end'
        )
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/healthz",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    run = Run(seconds=max(1, round(seconds)))
    if "Non-2xx" in out or "Socket errors" in out:  # wrk prints these lines only when it saw any
        run.errors.append(out)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]

    run.count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    run.seconds = float(run.count) / float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    run.reported = {50: ms("50%"), 99: ms("99%")}
    if os.environ.get("BENCH_WRK_SHOW"):
        print(out, file=sys.stderr)
    return run


def pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    return (
        xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))] * 1000
        if xs
        else float("nan")
    )


# --- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def served(args: argparse.Namespace, tmp: Path) -> Iterator[Server]:
    """The server on the given database (clock pinned) or on a fresh one loaded with usage."""
    if args.database:
        server = Server(args.database, tmp, now=args.now)
        try:
            server.wait_healthy()
            yield server
        finally:
            server.stop()
        return
    with fresh_database(args.db, tmp, "check") as url:
        server = Server(url, tmp, now=args.now)
        try:
            server.wait_healthy()
            load(server.base, args.now or datetime.now(UTC))
            yield server
        finally:
            server.stop()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the fresh database's kind (without --database)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="serve this existing database (e.g. one feed.py --keep left)",
    )
    parser.add_argument(
        "--now",
        help="RFC 3339: the server's pinned clock (default: with --database "
        f"{DEFAULT_FEED_NOW}, feed.py's default; else the real time)",
    )
    parser.add_argument(
        "--open-loop",
        type=float,
        default=1000.0,
        metavar="RATE",
        help="requests/s of the fixed arrival schedule (default 1000; 0 skips it)",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of each measurement (default 10)"
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="connections of the closed-loop throughput runs"
    )
    parser.add_argument(
        "--client",
        choices=("asyncio", "wrk"),
        default="asyncio",
        help="load generator of the closed-loop throughput runs (the open loop is always asyncio)",
    )
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("--client wrk needs wrk on PATH (Debian: apt-get install wrk)")
    if args.database and args.now is None:
        args.now = DEFAULT_FEED_NOW
    if args.now is not None:
        args.now = datetime.fromisoformat(args.now).astimezone(UTC)
    if (
        args.database
        and args.database.startswith("sqlite:///")
        and not Path(args.database[10:]).exists()
    ):
        parser.error(f"--database: no such file {args.database[10:]}")
    with tempfile.TemporaryDirectory() as tmp, served(args, Path(tmp)) as server:
        targets = check_targets(server.base)
        checks = [raw_request("POST", path, body) for path, body in targets]
        health = [raw_request("GET", "/healthz", None)]
        # Warm up: every balance computed once, as a server that has been running has them.
        closed_loop(server.port, checks, 4, 300.0, count=len(checks))
        loops = (
            [open_loop(server.port, r, args.open_loop, args.seconds) for r in (checks, health)]
            if args.open_loop > 0
            else []
        )
        if args.client == "wrk":
            tput = [
                wrk(server.port, t, args.clients, args.seconds, Path(tmp)) for t in (targets, None)
            ]
        else:
            tput = alternating(server.port, (checks, health), args.clients, args.seconds)
        single = [closed_loop(server.port, r, 1, min(args.seconds, 5.0)) for r in (checks, health)]
    return report(args, len(targets), loops, tput, single)


def report(
    args: argparse.Namespace, n_targets: int, loops: list[Run], tput: list[Run], single: list[Run]
) -> int:
    where = args.database or f"a fresh {args.db} database with a month of demo usage"
    clock = f"clock pinned at {args.now.isoformat()}" if args.now else "real clock"
    print(
        f"\nquotameter check: 1 server process on {where} ({clock}); {n_targets} customer/feature "
        f"checks, amounts {', '.join(map(str, AMOUNTS))}; 2 CPUs shared by client and server\n"
    )
    if loops:
        print(
            f"open loop, {args.open_loop:,.0f} req/s scheduled for {args.seconds:.0f} s each "
            "(asyncio raw-socket client); latency from the scheduled send:"
        )
        print(
            f"  {'endpoint':14} {'sent/s':>8} {'answered/s':>10} {'errors':>6} {'p50 ms':>8} "
            f"{'p90 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8} {'late p99':>8} {'client CPU':>10}"
        )
        for name, run in zip(("check", "GET /healthz"), loops, strict=True):
            print(
                f"  {name:14} {run.sent_rate:8,.0f} {run.rate:10,.0f} {len(run.errors):6} "
                + " ".join(f"{pct(run.latencies, p):8.2f}" for p in (50, 90, 99, 100))
                + f" {pct(run.lags, 99):8.2f} {run.client_cpu / run.seconds:10.0%}"
            )
        print(
            "  (late p99: how late the generator itself sent, in ms, which the latencies include; "
            "client CPU: share of one core)"
        )
    client = "wrk, 2 threads" if args.client == "wrk" else "asyncio raw-socket client"
    print(f"\nclosed loop, {args.clients} connections, {args.seconds:.0f} s each ({client}):")
    print(f"  {'endpoint':22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, run in zip(("check", "GET /healthz"), tput, strict=True):
        print(f"  {name:22} {run.rate:8,.0f} {run.ms(50):8.2f} {run.ms(99):8.2f}")
    ratio = tput[0].rate / tput[1].rate
    print(
        f"one client: check p50 {pct(single[0].latencies, 50):.2f} ms ({single[0].rate:,.0f} "
        "req/s), "
        f"/healthz p50 {pct(single[1].latencies, 50):.2f} ms ({single[1].rate:,.0f} req/s)"
    )
    print("\ntargets:")
    loop_run = loops[0] if loops else None
    if loop_run is not None:
        p99 = pct(loop_run.latencies, 99)
        print(
            f"  p99 <= {TARGET_P99_MS:g} ms at {args.open_loop:,.0f} req/s open loop: "
            f"{verdict(p99 <= TARGET_P99_MS and loop_run.rate >= 0.95 * args.open_loop)} "
            f"(p99 {p99:.2f} ms, answered {loop_run.rate:,.0f} req/s)"
        )
    print(
        f"  sustained check >= {TARGET_RATIO} x /healthz: {verdict(ratio >= TARGET_RATIO)} "
        f"({ratio:.2f})"
    )
    errors = [e for run in (*loops, *tput, *single) for e in run.errors]
    if errors:
        print(f"INVALID: {len(errors)} failed requests; first: {errors[0][:500]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
