"""`quotameter serve` as the README runs it: a real process that says where it listens."""

from __future__ import annotations

from pathlib import Path

import httpx

from support import ServerProcess


def test_serve_prints_where_it_listens_and_answers(tmp_path: Path) -> None:
    server = ServerProcess(None, str(tmp_path), QUOTAMETER_SCHEDULER="true")
    try:
        output = server.wait_ready()
        assert f"quotameter listening on http://127.0.0.1:{server.port}" in output, output
        assert "sqlite:///quotameter.sqlite3" in output
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        assert (tmp_path / "quotameter.sqlite3").exists()  # the embedded default, in the working directory
    finally:
        server.stop()
