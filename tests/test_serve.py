"""`quotameter serve` as the README runs it: a real process that says where it listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_prints_where_it_listens_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "QUOTAMETER_PORT": str(port)}
    env.pop("QUOTAMETER_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "quotameter.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks on the process's own output: no sleeping here
            seen.append(line)
            if "Application startup complete" in line:
                break
        output = "".join(seen)
        assert f"quotameter listening on http://127.0.0.1:{port}" in output, output
        assert "sqlite:///quotameter.sqlite3" in output
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert (tmp_path / "quotameter.sqlite3").exists()  # the embedded default, in the working directory
    finally:
        proc.terminate()
        proc.wait(timeout=30)
