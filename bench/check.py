"""Entitlement checks over HTTP: throughput and latency, against a trivial endpoint.

    .venv/bin/python bench/check.py [--db sqlite|postgresql] [--clients 16] [--seconds 8] [--client python|wrk]

One real server process (the same launcher as bench/ingest.py) on a fresh database with
the demo catalog and a month of usage for a pooled-media organization (per-seat allowance,
a top-up, seat changes) and a session-quota customer. C client threads, each on its own
keep-alive connection, send `POST …/entitlements/{feature}/check` for S seconds; then the
same clients send `GET /healthz` (no database, no domain work) for S seconds: the baseline.
It prints requests/s, p50 and p99 latency of both and the ratio of throughputs.

`--client wrk` sends the same requests with wrk (Debian's `wrk`, a C load generator, two
threads), which leaves more of the two cores to the server than Python client threads do.

Targets (issue 3): p99 under 5 ms at 16 concurrent clients, and at least half the trivial
endpoint's throughput. Exit 0 either way: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ingest import AUTH, Server, fresh_database  # noqa: E402
from support import demo_catalog  # noqa: E402


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
            events.append({"specversion": "1.0", "id": f"m{i}{action}", "source": "bench", "type": "media.activity",
                           "subject": "acme", "time": when.isoformat(),
                           "data": {"user": user, "stream": f"{user}/mic", "kind": "mic", "action": action}})
    for i in range(5000):
        events.append({"specversion": "1.0", "id": f"s{i}", "source": "bench", "type": "session.created",
                       "subject": "docs", "time": (start + (now - start) * i / 5000).isoformat(), "data": {}})
    for i in range(0, len(events), 1000):
        assert c.post("/v1/events", json=events[i:i + 1000]).json()["rejected"] == []
    c.patch("/v1/customers/acme", json={"seats": 14, "effective_at": (start + timedelta(days=3)).isoformat()})
    c.post("/v1/customers/acme/topups", json={"feature": "media", "blocks": 2, "id": "bench-topup"})
    c.close()


def hammer(port: int, method: str, path: str, bodies: list[bytes] | None, clients: int, seconds: float
           ) -> tuple[int, list[float]]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = {"Content-Type": "application/json", **AUTH}
        mine = latencies[k]
        i = k
        ready.wait()
        while not stop.is_set():
            body = bodies[i % len(bodies)] if bodies else None
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                failures.append(f"{method} {path}: HTTP {resp.status}")
                stop.set()
            i += clients
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"invalid run: {failures[0]} ({len(failures)} failed requests)")
    flat = [x for xs in latencies for x in xs]
    return len(flat), flat


def wrk(port: int, method: str, path: str, bodies: list[bytes] | None, clients: int, seconds: float,
        tmp: Path) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) measured by wrk with `clients` connections."""
    script = tmp / "wrk.lua"
    headers = {"Content-Type": "application/json", **AUTH}
    lines = [f'wrk.method = "{method}"'] + [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if bodies:
        lines.append("local bodies = {" + ", ".join(f"[[{b.decode()}]]" for b in bodies) + "}")
        lines.append("local i = 0")
        lines.append("request = function() i = i + 1; return wrk.format(nil, nil, nil, bodies[i % #bodies + 1]) end")
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:  # wrk prints these lines only when it saw any
        raise SystemExit(f"invalid run:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, ms("50%"), ms("99%")


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000)[int(p * 10) - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--client", choices=("python", "wrk"), default="python")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("--client wrk needs wrk on PATH (Debian: apt-get install wrk)")
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.db, Path(tmp), "check") as url:
        server = Server(url, Path(tmp))
        try:
            server.wait_healthy()
            load(server.base, now)
            bodies = [orjson.dumps({"amount": a}) for a in (1, 5, 30, 120)]
            # warm up both paths
            hammer(server.port, "POST", "/v1/customers/acme/entitlements/media/check", bodies, 2, 0.5)
            runs = [("check media (duration, per seat, top-up)", "POST", "/v1/customers/acme/entitlements/media/check",
                     bodies),
                    ("check sessions (count)", "POST", "/v1/customers/docs/entitlements/sessions/check", bodies),
                    ("GET /healthz (baseline)", "GET", "/healthz", None)]
            rows = []
            for name, method, path, sent in runs:
                if args.client == "wrk":
                    rows.append((name, *wrk(server.port, method, path, sent, args.clients, args.seconds, Path(tmp))))
                else:
                    n, lat = hammer(server.port, method, path, sent, args.clients, args.seconds)
                    rows.append((name, n / args.seconds, pct(lat, 50), pct(lat, 99)))
        finally:
            server.stop()
    base_rate = rows[-1][1]
    client = "wrk, 2 threads" if args.client == "wrk" else "Python threads"
    print(f"\nquotameter check: 1 server process, {args.db}, {args.clients} concurrent clients ({client}), "
          f"{args.seconds:.0f} s each; 2 CPUs shared by client and server\n")
    print(f"{'endpoint':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8}")
    for name, rate, p50, p99 in rows:
        print(f"{name:44} {rate:8.0f} {p50:8.2f} {p99:8.2f} {rate / base_rate:8.2f}")
    worst = max(rows[0][3], rows[1][3])
    ratio = min(rows[0][1], rows[1][1]) / base_rate
    print(f"\ntargets (issue 3): p99 < 5 ms at 16 clients: {'PASS' if worst < 5 else 'MISS'} "
          f"(worst {worst:.2f} ms); throughput >= 0.5 x baseline: {'PASS' if ratio >= 0.5 else 'MISS'} ({ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
