"""Ingest throughput: count events over HTTP against a raw insert of the same rows.

    .venv/bin/python bench/ingest.py [--db sqlite|postgresql|both] [--events N] [--batch B]
        [--clients C]

For each database, one run first inserts the rows of N `session.created` CloudEvents
straight into a fresh database of that kind, with quotameter's schema, through the same
driver and connection setup as the server, one transaction per batch (the baseline). Then it
starts a real server process (uvicorn, one process) on another fresh database, posts the same
N events to `POST /v1/events` in pre-serialized batches from C concurrent clients, and checks
that every event was accepted, stored and counted. It prints both rates and their ratio side
by side: the machine is noisy, and the ratio is what carries from one run to the next.
See bench/README.md.

Exit status: 0 whether the targets are met or not (this is a measurement, not a test);
1 only when the run is invalid (the server failed, or events were lost or not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import httpx
import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quotameter.catalog.model import load_yaml
from quotameter.store.engine import make_engine
from quotameter.store.migrate import upgrade
from quotameter.timeutil import from_us, rfc3339, to_us

PG_ADMIN_URL = os.environ.get(
    "QUOTAMETER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET_HTTP_EPS = 50_000
TARGET_RATIO = 0.25
EVENT_TYPE = "session.created"
FEATURE = "sessions"
# `docs` is the demo catalog's session customer; the others copy its plan.
CUSTOMERS = ("docs", "bench-b", "bench-c", "bench-d")
SOURCE = "bench/ingest"
WINDOW = timedelta(days=30)
COLUMNS = ("source", "event_id", "type", "subject", "time_us", "data", "received_us")


# --- the workload ----------------------------------------------------------------------------


@dataclass
class Workload:
    bodies: list[bytes]  # one pre-serialized JSON array per batch
    rows: list[list[tuple]]  # the same events as `events` rows, per batch
    sizes: list[int]
    window_start: datetime
    window_end: datetime  # every event time is before this; balances are read at it

    @property
    def n(self) -> int:
        return sum(self.sizes)


def make_workload(n: int, batch: int, order: str, seed: int) -> Workload:
    """N distinct session.created events for a few customers, spread over the 30 days before now.

    `order=time` sends them in time order, as a live feed would (a batch then touches a few
    hourly buckets); `order=random` scatters every batch over the whole month.
    """
    rnd = random.Random(seed)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    start = end - WINDOW
    lo, span = to_us(start), to_us(end) - to_us(start)
    times = [lo + rnd.randrange(span) for _ in range(n)]
    if order == "time":
        times.sort()
    received_us = to_us(end)
    bodies, rows, sizes = [], [], []
    for b0 in range(0, n, batch):
        events, batch_rows = [], []
        for i in range(b0, min(b0 + batch, n)):
            subject = CUSTOMERS[rnd.randrange(len(CUSTOMERS))]
            data = {"session": f"s{i}", "user": f"u{rnd.randrange(500)}"}
            ev = {
                "specversion": "1.0",
                "id": f"ev-{i:09d}",
                "source": SOURCE,
                "type": EVENT_TYPE,
                "subject": subject,
                "time": rfc3339(from_us(times[i])),
                "data": data,
            }
            events.append(ev)
            batch_rows.append(
                (
                    SOURCE,
                    ev["id"],
                    EVENT_TYPE,
                    subject,
                    times[i],
                    orjson.dumps(data).decode(),
                    received_us,
                )
            )
        bodies.append(orjson.dumps(events))
        rows.append(batch_rows)
        sizes.append(len(events))
    return Workload(bodies, rows, sizes, start, end)


def bench_catalog() -> dict:
    doc = load_yaml(files("quotameter.demo").joinpath("catalog.yaml").read_text())
    assert doc["meters"]["coedit_sessions"] == {
        "event_type": EVENT_TYPE,
        "aggregation": "count",
        "unit": "session",
    }, "the demo catalog's count meter changed; update bench/ingest.py"
    template = doc["customers"]["docs"]
    for name in CUSTOMERS:
        doc["customers"].setdefault(name, {**template, "owner": f"owner@{name}.example"})
    return doc


# --- fresh databases -------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, label: str, keep: bool = False) -> Iterator[str]:
    """A database URL with nothing in it (SQLite: a file in `workdir`); a PostgreSQL database
    is dropped afterwards unless `keep`."""
    name = f"bench_{uuid.uuid4().hex[:10]}_{label}"
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.sqlite3'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def count_events(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


# --- the baseline: the same rows straight into the database ----------------------------------


def raw_insert(kind: str, url: str, work: Workload, pg_method: str) -> tuple[float, str]:
    """Seconds to insert every batch, one transaction per batch, and how it was done.

    The connection comes from quotameter's own engine, so it is configured exactly as the
    server's (SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE; PostgreSQL: psycopg).
    """
    engine = make_engine(url)
    upgrade(engine)
    raw = engine.raw_connection()
    conn = raw.driver_connection
    cols = ", ".join(COLUMNS)
    try:
        if kind == "sqlite":
            assert isinstance(conn, sqlite3.Connection)
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                conn.execute("PRAGMA synchronous").fetchone()[0]
            ]
            sql = f"INSERT INTO events ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"
            t0 = time.perf_counter()
            for rows in work.rows:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            return (
                time.perf_counter() - t0,
                f"sqlite3 executemany INSERT (journal_mode={mode}, synchronous={sync})",
            )
        import psycopg

        assert isinstance(conn, psycopg.Connection)
        t0 = time.perf_counter()
        if pg_method == "copy":
            for rows in work.rows:
                with conn.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
            how = "psycopg COPY FROM STDIN"
        else:
            sql = f"INSERT INTO events ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
            for rows in work.rows:
                with conn.cursor() as cur:
                    cur.executemany(sql, rows)
                conn.commit()
            pipeline = " (pipeline mode)" if psycopg.Pipeline.is_supported() else ""
            how = f"psycopg executemany INSERT{pipeline}"
        return time.perf_counter() - t0, f"{how}, psycopg {psycopg.__version__}"
    finally:
        raw.close()
        engine.dispose()


# --- the server under test -------------------------------------------------------------------


def _server_options() -> dict[str, str]:
    opts = {"loop": "asyncio", "http": "h11"}
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        opts["loop"] = "uvloop"
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401

        opts["http"] = "httptools"
    return opts


# The admin key the benchmark's server is started with (QUOTAMETER_ADMIN_KEY).
BENCH_KEY = "qm_bench_admin_key"
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


class FeedClock:
    """A clock the benchmark moves and the server reads: 8 bytes (microseconds since the epoch)
    in a shared file. The producers move it to the end of each batch before they send it, so
    the server lives the feed's time as a live product's server would (its events are stamped
    just before they arrive), however fast the feed is replayed. It never goes back."""

    def __init__(self, path: Path, create_at: int | None = None) -> None:
        import mmap

        if create_at is not None:
            path.write_bytes(struct.pack("<q", create_at))
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 8)
        self._lock = threading.Lock()

    def read_us(self) -> int:
        return int(struct.unpack_from("<q", self._map, 0)[0])

    def move_to(self, t_us: int) -> None:
        with self._lock:
            if t_us > self.read_us():
                struct.pack_into("<q", self._map, 0, t_us)

    def __call__(self) -> datetime:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.read_us())


def serve(url: str, port: int, now: str | None = None) -> None:
    """The child process: one uvicorn process serving quotameter (scheduler on, as `serve`).

    With `now` (RFC 3339) the app's clock is pinned: it reads `now` at start and runs on
    with real time from there (`clock_from`, as `quotameter demo --now` does). With
    `now` = `file:PATH` it reads a FeedClock the benchmark moves.
    """
    import uvicorn

    from quotameter.api.web import clock_from, system_clock
    from quotameter.server import create_app
    from quotameter.settings import Settings

    if now and now.startswith("file:"):
        clock = FeedClock(Path(now[5:]))
    else:
        clock = (
            clock_from(datetime.fromisoformat(now.replace("Z", "+00:00"))) if now else system_clock
        )
    uvicorn.run(
        create_app(Settings(database_url=url, admin_key=BENCH_KEY), clock=clock),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **_server_options(),
    )  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The server under test in a child process; `now` pins its clock (see `serve`)."""

    def __init__(self, url: str, workdir: Path, now: datetime | Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        pinned = (
            [f"file:{now}" if isinstance(now, Path) else rfc3339(now)] if now is not None else []
        )
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", url, str(self.port), *pinned],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"the server did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- the clients -----------------------------------------------------------------------------


@dataclass
class PostResult:
    seconds: float = 0.0
    client_cpu: float = 0.0
    answers: list[tuple[int, bytes] | str | None] = field(
        default_factory=list
    )  # (status, body) or an error
    latencies: list[float] = field(
        default_factory=list
    )  # per batch: first send to final answer, seconds
    retries_503: int = 0  # 503 answers, each retried after its Retry-After


def retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds; 1 s when absent or a date)."""
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def post_all(
    port: int,
    bodies: Sequence[bytes],
    clients: int,
    before_send: Callable[[int], None] | None = None,
) -> PostResult:
    """Post every body with `clients` threads, each on its own keep-alive connection.

    The threads take the batches in order from one shared queue, as producers of a live feed
    would. A 503 is retried on the same connection after its Retry-After delay and counted;
    a batch's latency runs from its first send to its final answer, waits included.
    http.client in threads: the cheapest client CPU-wise, which matters on two cores shared
    with the server. Connections are opened before the clock starts.
    """
    out = PostResult(answers=[None] * len(bodies), latencies=[float("nan")] * len(bodies))
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    headers = {"Content-Type": "application/json", **AUTH}

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker() -> None:
        try:
            conn = connect()
        finally:
            start.wait()
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            if before_send is not None:
                before_send(i)
            t0 = time.perf_counter()
            try:
                while True:
                    conn.request("POST", "/v1/events", body=bodies[i], headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 503:
                        break
                    with lock:
                        out.retries_503 += 1
                    time.sleep(retry_after(resp.getheader("Retry-After")))
                out.answers[i] = (resp.status, body)
            except (OSError, http.client.HTTPException) as err:
                # The server dropped the connection (uvicorn does after an unhandled error):
                # record it and go on with a new one, so the other batches are still measured.
                out.answers[i] = f"{type(err).__name__}: {err}"
                conn.close()
                conn = connect()
            out.latencies[i] = time.perf_counter() - t0
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    out.seconds = time.perf_counter() - t0
    out.client_cpu = time.process_time() - cpu0
    return out


def check_answers(result: PostResult, sizes: Sequence[int]) -> list[str]:
    problems = []
    for i, (answer, size) in enumerate(zip(result.answers, sizes, strict=True)):
        if answer is None or isinstance(answer, str):
            problems.append(f"batch {i}: {answer or 'no answer'}")
            continue
        status, body = answer
        if status != 200:
            problems.append(f"batch {i}: HTTP {status}: {body[:300]!r}")
            continue
        got = orjson.loads(body)
        if got.get("accepted") != size or got.get("duplicates") != 0 or got.get("rejected"):
            rejected = got.get("rejected") or []
            problems.append(
                f"batch {i}: accepted {got.get('accepted')} of {size}, duplicates "
                f"{got.get('duplicates')}, "
                f"{len(rejected)} "
                f"rejected{' (first: ' + str(rejected[0]) + ')' if rejected else ''}"
            )
    return problems


def counted_sessions(base: str, work: Workload) -> int:
    """The balance endpoint's usage summed over customers and over every period the window
    touches."""
    total = 0
    with httpx.Client(base_url=base, timeout=60, headers=AUTH) as client:
        for customer in CUSTOMERS:
            at = work.window_end
            while True:
                r = client.get(
                    f"/v1/customers/{customer}/entitlements/{FEATURE}", params={"at": rfc3339(at)}
                )
                r.raise_for_status()
                body = r.json()
                total += int(body["usage"])
                period_start = datetime.fromisoformat(
                    body["period"]["start"].replace("Z", "+00:00")
                )
                if period_start <= work.window_start:
                    break
                at = period_start - timedelta(microseconds=1)
    return total


# --- one database ----------------------------------------------------------------------------


@dataclass
class Outcome:
    database: str
    raw_method: str = ""
    raw_runs: list[float] = field(default_factory=list)  # seconds
    http_runs: list[tuple[float, float, float]] = field(
        default_factory=list
    )  # wall, server CPU, client CPU
    retries_503: int = 0  # over every HTTP run
    problems: list[str] = field(default_factory=list)

    @property
    def raw_seconds(self) -> float:
        return min(self.raw_runs, default=float("nan"))

    @property
    def best_http(self) -> tuple[float, float, float]:
        return min(self.http_runs, default=(float("nan"),) * 3)


@contextlib.contextmanager
def sampled(pid: int, py_spy: str | None, out: Path) -> Iterator[None]:
    """Sample the server with py-spy while the block runs (collapsed stacks, one per line)."""
    if py_spy is None:
        yield
        return
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--nonblocking",
            *(["--idle"] if os.environ.get("PY_SPY_IDLE") else []),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach before the clock starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(f"[py-spy] server stacks in {out}", file=sys.stderr, flush=True)


def measure_raw(kind: str, work: Workload, pg_method: str, workdir: Path, out: Outcome) -> None:
    with fresh_database(kind, workdir, "raw") as url:
        seconds, out.raw_method = raw_insert(kind, url, work, pg_method)
        stored = count_events(url)
    if stored != work.n:
        out.problems.append(f"raw insert: the database holds {stored} events, expected {work.n}")
    out.raw_runs.append(seconds)


def measure_http(
    kind: str,
    work: Workload,
    clients: int,
    workdir: Path,
    out: Outcome,
    py_spy: str | None,
    profile_dir: Path | None,
) -> None:
    problems: list[str] = []
    with fresh_database(kind, workdir, "http") as url:
        server = Server(url, workdir)
        try:
            server.wait_healthy()
            r = httpx.put(
                f"{server.base}/v1/catalog",
                content=orjson.dumps(bench_catalog()),
                headers={"Content-Type": "application/json", **AUTH},
                timeout=60,
            )
            if r.status_code != 200:
                raise RuntimeError(f"PUT /v1/catalog answered {r.status_code}: {r.text[:500]}")
            with sampled(
                server.proc.pid, py_spy, (profile_dir or workdir) / f"server-{kind}.stacks.txt"
            ):
                cpu0 = server.cpu_seconds()
                posted = post_all(server.port, work.bodies, clients)
                server_cpu = server.cpu_seconds() - cpu0
            problems += check_answers(posted, work.sizes)
            out.retries_503 += posted.retries_503
            stored = count_events(url)
            if stored != work.n:
                problems.append(f"HTTP: the database holds {stored} events, expected {work.n}")
            counted = counted_sessions(server.base, work)
            if counted != work.n:
                problems.append(
                    f"HTTP: the balances of {', '.join(CUSTOMERS)} sum to {counted}, expected "
                    f"{work.n}"
                )
            out.http_runs.append((posted.seconds, server_cpu, posted.client_cpu))
        except Exception as err:
            problems.append(f"{type(err).__name__}: {err}")
        finally:
            server.stop()
        if problems:
            problems.append(f"server log (tail):\n{server.log_tail()}")
    out.problems += problems


def run_one(
    kind: str,
    work: Workload,
    clients: int,
    pg_method: str,
    repeat: int,
    workdir: Path,
    py_spy: str | None = None,
    profile_dir: Path | None = None,
) -> Outcome:
    """Baseline and HTTP alternately, `repeat` times each; the fastest run of each is kept."""
    out = Outcome(kind)
    for i in range(repeat):
        run = f" (run {i + 1}/{repeat})" if repeat > 1 else ""
        print(f"[{kind}] raw insert baseline{run} …", file=sys.stderr, flush=True)
        measure_raw(kind, work, pg_method, workdir, out)
        print(
            f"[{kind}] HTTP ingest through one server process{run} …", file=sys.stderr, flush=True
        )
        measure_http(kind, work, clients, workdir, out, py_spy, profile_dir)
    return out


# --- the report ------------------------------------------------------------------------------


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds and seconds == seconds else float("nan")


def _verdict(ok: bool, valid: bool) -> str:
    if not valid:
        return "INVALID"
    return "PASS" if ok else "MISS"


def report(
    outcomes: Sequence[Outcome], work: Workload, args: argparse.Namespace, load: tuple[float, ...]
) -> None:
    opts = _server_options()
    print()
    print(
        f"quotameter ingest: {work.n:,} distinct {EVENT_TYPE} events (count meter), "
        f"{len(CUSTOMERS)} customers, "
        f"times over {WINDOW.days} days, sent in {args.order} order"
    )
    print(
        f"server: 1 uvicorn process (loop={opts['loop']}, http={opts['http']}); client: "
        f"{args.clients} threads, "
        f"http.client keep-alive, bodies pre-serialized; {os.cpu_count()} CPUs shared by both"
    )
    print(
        f"load average before the run: {' '.join(f'{x:.2f}' for x in load)}"
        + (f"; fastest of {args.repeat} runs of each" if args.repeat > 1 else "")
    )
    print()
    head = (
        "database",
        "batch",
        "clients",
        "HTTP ev/s",
        "raw ev/s",
        "HTTP/raw",
        f"HTTP >= {TARGET_HTTP_EPS:,}",
        f"ratio >= {TARGET_RATIO}",
    )
    lines = []
    for o in outcomes:
        http_eps, raw_eps = _rate(work.n, o.best_http[0]), _rate(work.n, o.raw_seconds)
        ratio = http_eps / raw_eps
        valid = not o.problems
        lines.append(
            (
                o.database,
                str(args.batch),
                str(args.clients),
                f"{http_eps:,.0f}",
                f"{raw_eps:,.0f}",
                f"{ratio:.3f}",
                _verdict(http_eps >= TARGET_HTTP_EPS, valid),
                _verdict(ratio >= TARGET_RATIO, valid),
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
        wall, server_cpu, client_cpu = o.best_http
        print(
            f"{o.database}: HTTP {wall:.2f} s wall, server CPU {server_cpu:.2f} s "
            f"({server_cpu / work.n * 1e6:.1f} us/event), client CPU {client_cpu:.2f} s; "
            f"raw {o.raw_seconds:.2f} s via {o.raw_method}, one transaction per batch; "
            f"{o.retries_503} answers 503 (retried after Retry-After)"
        )
    print(
        f"targets: >= {TARGET_HTTP_EPS:,} events/s over HTTP for count events on one process, "
        f"HTTP/raw >= {TARGET_RATIO}"
    )
    for o in outcomes:
        shown = (
            o.problems
            if len(o.problems) <= 12
            else [*o.problems[:10], f"… {len(o.problems) - 11} more …", o.problems[-1]]
        )
        for p in shown:
            print(f"INVALID {o.database}: {p}")


def profiler(parser: argparse.ArgumentParser, profile: Path | None) -> str | None:
    """py-spy's path when `--profile DIR` asks for a profile (DIR is made), else None."""
    if not profile:
        return None
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        parser.error("--profile needs py-spy: pip install py-spy, or set PY_SPY to its path")
    profile.mkdir(parents=True, exist_ok=True)
    return py_spy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--events", type=int, default=200_000, help="events to send (default 200000)"
    )
    parser.add_argument(
        "--batch", type=int, default=1000, help="events per request and per raw transaction"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP connections")
    parser.add_argument(
        "--order",
        choices=("time", "random"),
        default="time",
        help="time: batches in event-time order, as a live feed sends them (default); "
        "random: every batch spread over the whole month",
    )
    parser.add_argument(
        "--pg-raw",
        choices=("executemany", "copy"),
        default="executemany",
        help=(
            "how the PostgreSQL baseline inserts (default executemany, the server's statement form)"
        ),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run baseline and HTTP alternately this many times and keep the fastest of each "
        "(a busy machine only ever makes a run slower)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the server with py-spy (on PATH or $PY_SPY) during the HTTP phase and write "
        "collapsed stacks to DIR/server-<db>.stacks.txt; the sampling costs CPU, so the "
        "figures of a profiled run are not the benchmark's",
    )
    args = parser.parse_args(argv)
    if min(args.events, args.batch, args.clients, args.repeat) < 1:
        parser.error("--events, --batch, --clients and --repeat must be positive")

    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    py_spy = profiler(parser, args.profile)
    load = os.getloadavg()
    print(
        f"generating {args.events:,} events in batches of {args.batch} …",
        file=sys.stderr,
        flush=True,
    )
    work = make_workload(args.events, args.batch, args.order, args.seed)
    with tempfile.TemporaryDirectory(prefix="quotameter-bench-") as tmp:
        outcomes = [
            run_one(
                kind, work, args.clients, args.pg_raw, args.repeat, Path(tmp), py_spy, args.profile
            )
            for kind in kinds
        ]
    report(outcomes, work, args, load)
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "_serve":
        serve(sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
    else:
        sys.exit(main())
