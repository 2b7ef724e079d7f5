"""`make run-cluster` as a new operator meets it: up, two ready nodes, one login, clean stop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_cluster.py"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Under /tmp itself: as root, PostgreSQL runs as `postgres`, who must reach it."""
    path = Path(tempfile.mkdtemp(prefix="rtc-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _file_across_nodes(http: httpx.AsyncClient, urls: list[str], token: str) -> None:
    """Declared and uploaded through node A, completed and downloaded through node B."""
    auth = {"Authorization": f"Bearer {token}"}
    team = (await http.post(f"{urls[0]}/api/v1/teams", json={"name": "ops"}, headers=auth)).json()
    data = b"the same bytes on every node"
    declared = await http.post(
        f"{urls[0]}/api/v1/files",
        headers=auth,
        json={
            "team_id": team["id"],
            "name": "notes.txt",
            "size": len(data),
            "content_type": "text/plain",
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    assert declared.status_code == 201, declared.text
    upload = declared.json()["upload"]
    put = await http.request(
        upload["method"], upload["url"], content=data, headers=upload["headers"]
    )
    assert put.status_code < 300, put.text
    file_id = declared.json()["id"]
    done = await http.post(f"{urls[1]}/api/v1/files/{file_id}/complete", headers=auth)
    assert done.status_code == 200, done.text
    got = await http.get(f"{urls[1]}/api/v1/files/{file_id}", headers=auth, follow_redirects=True)
    assert got.status_code == 200, got.text
    assert got.content == data


async def test_run_cluster_starts_two_ready_nodes_that_share_logins_and_stops_cleanly(
    data_dir: Path,
) -> None:
    if shutil.which("initdb") is None or shutil.which("redis-server") is None:
        pytest.skip("run-cluster needs PostgreSQL (initdb) and redis-server")
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    ports = {"PG_PORT": free_port(), "REDIS_PORT": free_port()}
    nodes = [free_port(), free_port()]
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "NODE_PORTS": ",".join(map(str, nodes)),
        "DATA_DIR": str(data_dir),
        "RTC_AUTH__HASH_TIME_COST": "1",
        "RTC_AUTH__HASH_MEMORY_KIB": "1024",
    }
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    try:

        def wait_running() -> list[str]:
            lines: list[str] = []
            for raw in iter(stdout.readline, b""):
                lines.append(raw.decode(errors="replace").rstrip())
                if lines[-1].startswith("Ctrl-C stops everything"):
                    return lines
            raise AssertionError("run-cluster exited:\n" + "\n".join(lines))

        printed = "\n".join(await asyncio.wait_for(asyncio.to_thread(wait_running), 120))
        urls = [f"http://127.0.0.1:{port}" for port in nodes]
        for url in urls:
            assert url in printed
        async with httpx.AsyncClient(timeout=10) as http:
            for url in urls:
                ready = (await http.get(f"{url}/readyz")).json()
                assert ready["status"] == "ok", ready
                assert ready["checks"]["bus"]["status"] == "ok"
            creds = {"email": "op@example.com", "password": "correct horse"}
            reg = await http.post(
                f"{urls[0]}/api/v1/auth/register", json={**creds, "display_name": "Op"}
            )
            assert reg.status_code == 201, reg.text
            token = (await http.post(f"{urls[0]}/api/v1/auth/login", json=creds)).json()
            me = await http.get(
                f"{urls[1]}/api/v1/users/me",
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            assert me.status_code == 200, me.text  # a token from node A works on node B
            await _file_across_nodes(http, urls, token["access_token"])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 90)
    assert code == 0
    for port in [*nodes, *ports.values()]:
        assert not _listening(port), f"port {port} still in use after the cluster stopped"
