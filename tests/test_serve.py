"""`quotameter serve` as the README runs it: a real process that says where it listens."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import orjson

from support import ServerProcess


def test_serve_prints_where_it_listens_and_answers(tmp_path: Path) -> None:
    server = ServerProcess(None, str(tmp_path), QUOTAMETER_SCHEDULER="true")
    try:
        output = server.wait_ready()
        assert f"quotameter listening on http://127.0.0.1:{server.port}" in output, output
        assert "sqlite:///quotameter.sqlite3" in output
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        assert (tmp_path / "quotameter.sqlite3").exists()  # the embedded default, in the working directory
        logged = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert {"level": "info", "logger": "uvicorn.error", "msg": "Application startup complete."}.items() <= \
            logged[-1].items(), logged
    finally:
        server.stop()


def test_first_start_prints_an_admin_key_once(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        server = ServerProcess(None, str(tmp_path), QUOTAMETER_ADMIN_KEY="")
        try:
            output = server.wait_ready()
            keys.append(re.findall(r"first admin key \(shown this once, keep it\): (qm_\S+)", output))
            if keys[-1]:
                r = httpx.get(f"{server.url}/v1/keys", headers={"Authorization": f"Bearer {keys[-1][0]}"})
                assert r.status_code == 200 and r.json()["keys"][0]["role"] == "admin"
        finally:
            server.stop()
    assert len(keys[0]) == 1 and keys[1] == []
