"""Test support: a real server process on a real socket, and thin real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.eventually import eventually as eventually  # re-exported

FAST_HASH = {"RTC_AUTH__HASH_TIME_COST": "1", "RTC_AUTH__HASH_MEMORY_KIB": "1024"}
# Every server a test starts serves /metrics and the details of /readyz to this token.
METRICS_TOKEN = "metrics-token-of-the-tests"
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}
TEST_ENV = {**FAST_HASH, "RTC_METRICS_TOKEN": METRICS_TOKEN}


@dataclass
class ChildProcess:
    """A `realtimechat …` child process whose output is kept."""

    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """How `realtimechat <args>` is started (a subclass may run other code)."""
        return [sys.executable, "-m", "realtimechat", *args]

    async def launch(self, args: list[str], ready: str) -> str:
        """Start `realtimechat <args>`; wait for the line containing `ready` (no sleeping)."""
        env = {**os.environ, **TEST_ENV, **self.env}
        self.proc = subprocess.Popen(
            self.command(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def wait_for_ready() -> str:
            for raw in iter(stdout.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                self.output.append(line)
                if ready in line:
                    return line
            raise RuntimeError(f"{args[0]} exited:\n" + "\n".join(self.output))

        line = await asyncio.wait_for(asyncio.to_thread(wait_for_ready), 60)
        # Keep draining the pipe so the child never blocks on a full stdout.
        asyncio.get_running_loop().run_in_executor(None, self._drain_output)
        return line

    def _drain_output(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            for raw in iter(self.proc.stdout.readline, b""):
                self.output.append(raw.decode(errors="replace").rstrip())


@dataclass
class ServerProcess(ChildProcess):
    """A `realtimechat serve` child process listening on a free port."""

    url: str = ""
    port: int = 0

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/v1/ws"

    async def start(self) -> None:
        """Start and wait for the "running at" line."""
        line = await self.launch(
            ["serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            "RealTimeChat is running at ",
        )  # fmt: skip
        self.url = line.rsplit(" ", 1)[-1]
        self.port = int(self.url.rsplit(":", 1)[-1])

    async def signal(self, sig: int) -> int:
        """Send a signal and wait for the process to exit; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 60)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                await self.signal(signal.SIGKILL)


@dataclass
class WorkerProcess(ChildProcess):
    """A `realtimechat worker` child process (outbox relay, notifications, housekeeping)."""

    async def start(self) -> None:
        """Start and wait for its "worker is running" line."""
        await self.launch(
            ["worker", "--data-dir", str(self.data_dir)], "RealTimeChat worker is running"
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def relayed(self) -> int:
        """Events this worker's relay published (from its log lines)."""
        total = 0
        for line in self.output:
            _, found, rest = line.partition("outbox relay published ")
            if found:
                total += int(rest.split(" ", 1)[0])
        return total

    async def kill(self) -> None:
        """kill -9, and wait for it to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 30)


@contextlib.asynccontextmanager
async def running_server(tmp: Path, **env: str) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp, env)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Api:
    """A logged-in (or anonymous) HTTP client for one user."""

    def __init__(self, server: ServerProcess, token: str | None = None) -> None:
        self.server = server
        self.token = token
        self.user_id = ""
        self.email = ""
        self.refresh_token = ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)

    async def aclose(self) -> None:
        await self.http.aclose()

    def authorize(self, token: str) -> None:
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.http.request(method, path, **kw)

    async def ok(
        self, method: str, path: str, status: int | tuple[int, ...] = (200, 201), **kw: Any
    ) -> Any:
        """Make a call that must succeed with `status`; its JSON."""
        resp = await self.http.request(method, path, **kw)
        expected = (status,) if isinstance(status, int) else status
        assert resp.status_code in expected, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    # -- conveniences over the v1 API --
    async def create_team(self, name: str = "team") -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("POST", "/api/v1/teams", 201, json={"name": name})
        return result

    async def add_to_team(self, team_id: str, user: Api) -> None:
        await self.ok(
            "POST", f"/api/v1/teams/{team_id}/members", (200, 201), json={"user_id": user.user_id}
        )

    async def create_channel(
        self, team_id: str, name: str = "general", private: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok(
            "POST",
            f"/api/v1/teams/{team_id}/channels",
            201,
            json={"name": name, "private": private},
        )
        return result

    async def join(self, channel_id: str, user: Api) -> None:
        await self.ok(
            "POST",
            f"/api/v1/channels/{channel_id}/members",
            (200, 201),
            json={"user_id": user.user_id},
        )

    async def send(self, channel_id: str, body: str, client_msg_id: str | None = None) -> Any:
        return await self.ok(
            "POST",
            "/api/v1/messages",
            (200, 201),
            json={
                "channel_id": channel_id,
                "body": body,
                "client_msg_id": client_msg_id or unique("m"),
            },
        )

    async def events(self, channel_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """Every event after `after_seq`, paging until has_more is false."""
        out: list[dict[str, Any]] = []
        while True:
            page = await self.ok(
                "GET",
                f"/api/v1/channels/{channel_id}/events",
                200,
                params={"after_seq": after_seq, "limit": 500},
            )
            out.extend(page["events"])
            if not page["has_more"]:
                return out
            after_seq = out[-1]["seq"]


async def team_channel(
    owner: Api, *members: Api, private: bool = False, name: str = "general"
) -> dict[str, Any]:
    """A new team of `owner` and `members`, and a channel they all are in."""
    team = await owner.create_team("team")
    for m in members:
        await owner.add_to_team(team["id"], m)
    channel = await owner.create_channel(team["id"], name, private=private)
    for m in members:
        await owner.join(channel["id"], m)
    return channel


async def new_user(server: ServerProcess, name: str = "user") -> Api:
    """Register and log in a fresh user."""
    anon = httpx.AsyncClient(base_url=server.url, timeout=30)
    email = f"{unique(name)}@example.com"
    try:
        reg = await anon.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "correct horse", "display_name": name},
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login", json={"email": email, "password": "correct horse"}
        )
        assert login.status_code == 200, login.text
    finally:
        await anon.aclose()
    api = Api(server, login.json()["access_token"])
    api.user_id = reg.json()["id"]
    api.email = email
    api.refresh_token = login.json()["refresh_token"]
    return api


class WsClient:
    """A real WebSocket client speaking the v1 protocol."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.ready: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, server: ServerProcess, token: str, cursors: dict[str, Any] | None = None, **kw: Any
    ) -> WsClient:
        conn = await websockets.connect(server.ws_url, max_queue=None, **kw)
        client = cls(conn)
        frame: dict[str, Any] = {"type": "auth", "token": token}
        if cursors is not None:
            frame["cursors"] = cursors
        await client.send(frame)
        client.ready = await client.expect("ready")
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(orjson.dumps(frame).decode())

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def expect(self, type_: str, timeout: float = 10) -> dict[str, Any]:
        """The next frame of `type_`, skipping heartbeats only."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "heartbeat":
                continue
            assert frame["type"] == type_, f"expected {type_}, got {frame}"
            return frame

    async def events(
        self, n: int, channel_id: str | None = None, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """The next `n` event frames (of one channel, if given), ignoring other frames."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            frame = await self.recv(timeout)
            if frame["type"] == "event" and (
                channel_id is None or frame["channel_id"] == channel_id
            ):
                out.append(frame)
        return out

    async def close(self) -> None:
        await self.conn.close()
