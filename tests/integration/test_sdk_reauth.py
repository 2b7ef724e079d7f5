"""The SDK's live session across token expiry and revocation (issue 13).

The renewal test runs a server process with two-second tokens. The revocation test runs
the node in this process (the real app under uvicorn on a real socket), so that it can
revoke a login on the node's hub the way the revocation watcher does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from realtimechat.bootstrap import build
from realtimechat.edge.app import create_app
from realtimechat.edge.hub import Hub
from realtimechat.settings import AuthSettings, Settings
from realtimechat.storage.migrate import upgrade
from realtimechat_client import ChatAPIError, ChatClient, LiveSession
from realtimechat_client.tokens import jwt_times
from tests.support import free_port, new_user, running_server, team_channel
from tests.support.sdk import FAST as SDK_FAST

PASSWORD = "correct horse"
# No tail checks: these tests count the session's requests and token refreshes.
FAST = replace(SDK_FAST, tail_check_s=0)


async def next_body(live: Any, body: str, timeout: float = 15) -> dict[str, Any]:
    """The next message.created event with `body` (others skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            event: dict[str, Any] = await live.next_event()
            if event["event"] == "message.created" and event["data"]["body"] == body:
                return event


async def test_the_live_session_renews_its_token_on_the_open_socket(tmp_path: Path) -> None:
    env = {
        "RTC_AUTH__ACCESS_TTL_S": "3",
        "RTC_WS__REAUTH_GRACE_S": "1",
        "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
        "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
    }
    async with running_server(tmp_path, **env) as server:
        alice, bob = await new_user(server, "alice"), await new_user(server, "bob")
        channel = await team_channel(alice, bob)
        async with ChatClient(server.url, FAST) as client, ChatClient(server.url, FAST) as other:
            await client.login(alice.email, PASSWORD)
            await other.login(bob.email, PASSWORD)
            async with LiveSession(client) as live:
                await asyncio.wait_for(live.wait_connected(), 10)
                first = client.access_token
                assert first is not None
                _, first_expiry = jwt_times(first)
                assert first_expiry is not None
                # Past the first token's expiry, its grace and a sweep of the server.
                await asyncio.sleep(max(0.0, first_expiry + 1 + 1.5 - time.time()))
                await other.send_message(channel["id"], "after the first token")
                await next_body(live, "after the first token")
                assert live.stats.connects == 1  # the same socket all along
                assert live.stats.reauths >= 1
                assert live.stats.auth_refreshes == 0  # never closed 4401
        await alice.aclose()
        await bob.aclose()


# ---- revocation: the node in this process ---------------------------------------------


@dataclass
class Node:
    url: str
    app: FastAPI

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.node.hub
        return hub


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.up.set()


@contextlib.asynccontextmanager
async def node_in_process(tmp: Path) -> AsyncIterator[Node]:
    """The real app (SQLite, in-process bus) served by uvicorn in this event loop."""
    settings = Settings(
        data_dir=tmp,
        port=free_port(),
        auth=AuthSettings(hash_time_cost=1, hash_memory_kib=1024),
        run_worker=False,
    )
    upgrade(settings)
    app = create_app(build(settings))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        ws="websockets-sansio",
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.up.wait(), 30)
        yield Node(f"http://127.0.0.1:{settings.port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_a_revoked_login_ends_the_live_session_without_reconnecting(
    tmp_path: Path,
) -> None:
    async with node_in_process(tmp_path) as node, ChatClient(node.url, FAST) as client:
        await client.register("ada@example.com", PASSWORD, "Ada")
        await client.login("ada@example.com", PASSWORD)
        async with LiveSession(client) as live:
            await asyncio.wait_for(live.wait_connected(), 10)
            (conn,) = node.hub.connections
            assert conn.principal.session_id is not None
            assert node.hub.close_sessions([conn.principal.session_id]) == 1
            with pytest.raises(ChatAPIError) as info:
                await asyncio.wait_for(live.next_event(), 10)
            assert info.value.code == "session_revoked"
            assert live.stats.connects == 1
            assert live.stats.auth_refreshes == 0  # it did not try again
            with pytest.raises(ChatAPIError):
                await live.send("any", "no")
