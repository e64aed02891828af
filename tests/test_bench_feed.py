"""bench/feed.py at a toy size: the benchmark runs, its checks pass, and its recomputation
of pooled media minutes is the metering arithmetic's (meters.spans)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import feed
from quotameter.meters.spans import Span, usage_us


def test_media_minutes_is_the_metering_arithmetic() -> None:
    rnd = random.Random(7)
    lo, at = 1_000 * feed.MINUTE, 2_000 * feed.MINUTE
    for _ in range(200):
        spans: dict[str, list[tuple[int, int | None]]] = {}
        for _ in range(rnd.randint(1, 12)):
            member = f"u{rnd.randrange(3)}"
            start = rnd.randrange(900 * feed.MINUTE, 2_100 * feed.MINUTE)
            stop = None if rnd.random() < 0.2 else start + rnd.randrange(1, 40 * feed.MINUTE)
            spans.setdefault(member, []).append((start, stop))
        as_spans = {
            m: [Span(a, b, b if b is not None else a) for a, b in ss] for m, ss in spans.items()
        }
        expected = usage_us(as_spans, lo, at, at, unit_us=feed.MINUTE) // feed.MINUTE
        assert feed.media_minutes(sorted(spans), spans, lo, at) == expected


def test_a_toy_feed_runs_valid(capsys) -> None:
    assert (
        feed.main(["--orgs", "30", "--events", "1500", "--history", "300", "--batch", "250"]) == 0
    )
    out = capsys.readouterr().out
    assert "INVALID" not in out and " ok" in out
    # The evaluations owed at the end are timed and counted in a second rate.
    assert "+evals ev/s" in out
    assert re.search(r"evaluations: \d+ customers owed one .* all evaluated [\d.]+ s later", out)
    # So is the largest size the SQLite write-ahead log reached.
    assert re.search(r"write-ahead log: at most [\d.,]+ MiB during the feed", out)


def test_producers_retry_a_503_after_its_retry_after() -> None:
    """A server that sheds load answers 503 with Retry-After: the batch is sent again and
    the retry counted, and the run stays valid."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import orjson

    from ingest import check_answers, post_all

    shed = iter([True])  # the first request is refused

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # the name http.server calls
            events = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if next(shed, False):
                status, body, extra = 503, b"{}", {"Retry-After": "0"}
            else:
                status, body, extra = (
                    200,
                    orjson.dumps({"accepted": len(events), "duplicates": 0, "rejected": []}),
                    {},
                )
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **extra}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bodies = [orjson.dumps([{"id": f"{b}-{i}"} for i in range(3)]) for b in range(4)]
        result = post_all(server.server_address[1], bodies, 2)
    finally:
        server.shutdown()
    assert result.retries_503 == 1
    assert check_answers(result, [3] * 4) == []
    assert all(lat >= 0 for lat in result.latencies)
