"""`quotameter serve` as the README runs it: a real process that says where it listens."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import orjson
import pytest

from support import ServerProcess


def test_serve_prints_where_it_listens_and_answers(tmp_path: Path) -> None:
    server = ServerProcess(None, str(tmp_path), QUOTAMETER_SCHEDULER="true")
    try:
        output = server.wait_ready()
        assert f"quotameter listening on http://127.0.0.1:{server.port}" in output, output
        # The default database, by the absolute path of the file it opened in the working directory.
        assert f"sqlite:///{tmp_path / 'quotameter.sqlite3'}" in output, output
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        assert (
            tmp_path / "quotameter.sqlite3"
        ).exists()  # the embedded default, in the working directory
        logged = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert {
            "level": "info",
            "logger": "uvicorn.error",
            "msg": "Application startup complete.",
        }.items() <= logged[-1].items(), logged
    finally:
        server.stop()


def test_first_start_prints_an_admin_key_once(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        server = ServerProcess(None, str(tmp_path), QUOTAMETER_ADMIN_KEY="")
        try:
            output = server.wait_ready()
            keys.append(
                re.findall(r"first admin key \(shown this once, keep it\): (qm_\S+)", output)
            )
            if keys[-1]:
                r = httpx.get(
                    f"{server.url}/v1/keys", headers={"Authorization": f"Bearer {keys[-1][0]}"}
                )
                assert r.status_code == 200 and r.json()["keys"][0]["role"] == "admin"
        finally:
            server.stop()
    assert len(keys[0]) == 1 and keys[1] == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_closes_a_connection_whose_headers_do_not_come_in_time(
    tmp_path: Path, workers: str
) -> None:
    server = ServerProcess(
        None, str(tmp_path), "--workers", workers, QUOTAMETER_HEADER_TIMEOUT_SECONDS="0.2"
    )
    try:
        server.wait_listening()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
            assert slow.recv(1024) == b""  # closed by the server, well before the socket's timeout
        assert httpx.get(f"{server.url}/healthz").json() == {
            "status": "ok"
        }  # whole requests are answered
    finally:
        server.stop()
