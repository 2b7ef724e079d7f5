"""Two API nodes on one PostgreSQL and one Redis: fan-out across nodes and a Redis outage.

Each node is a real `realtimechat serve` process; clients are real HTTP and
WebSocket clients. The nodes share nothing but the database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.ws_support import before_pong, events, token
from tests.postgres import PostgresServer, postgres_server
from tests.redis_server import RedisServer, redis_server
from tests.support import (
    Api,
    ServerProcess,
    WsClient,
    eventually,
    new_user,
    running_server,
    team_channel,
)

LIMITS = {
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
}


@dataclass
class Cluster:
    pg: PostgresServer
    redis: RedisServer
    a: ServerProcess
    b: ServerProcess

    def outbox_rows(self) -> int:
        with psycopg.connect(self.pg.url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox").fetchone()
            return int(row[0]) if row else 0


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        pg = await stack.enter_async_context(postgres_server())
        redis = await stack.enter_async_context(redis_server())
        env = {
            **LIMITS,
            "RTC_DATABASE_URL": pg.url,
            "RTC_REDIS_URL": redis.url,
            "RTC_REDIS__TIMEOUT_S": "0.5",
            "RTC_REDIS__RETRY_S": "0.1",
        }
        tmp: Path = tmp_path_factory.mktemp("cluster")
        a = await stack.enter_async_context(running_server(tmp / "a", **env))
        b = await stack.enter_async_context(running_server(tmp / "b", **env))
        yield Cluster(pg, redis, a, b)


async def on(node: ServerProcess, api: Api) -> Api:
    """The same user, talking to another node (tokens are valid on every node)."""
    other = Api(node, token(api))
    other.user_id, other.email = api.user_id, api.email
    return other


async def bus_status(node: ServerProcess, api: Api) -> str:
    body: dict[str, Any] = (await api.http.get(f"{node.url}/readyz")).json()
    status: str = body["checks"]["bus"]["status"]
    return status


async def alice_on_a_bob_on_b(cluster: Cluster) -> tuple[Api, Api, str, int]:
    """Two users of one channel, one per node; the channel and its next seq."""
    alice = await new_user(cluster.a, "alice")
    bob_b = await on(cluster.b, await new_user(cluster.a, "bob"))
    channel = await team_channel(alice, bob_b)
    return alice, bob_b, channel["id"], channel["last_seq"] + 2  # after bob's join


async def test_messages_sent_on_either_node_reach_listeners_on_both_in_order(
    cluster: Cluster,
) -> None:
    alice, bob_b, cid, first = await alice_on_a_bob_on_b(cluster)
    ws_a = await WsClient.connect(cluster.a, token(alice))
    ws_b = await WsClient.connect(cluster.b, token(bob_b))

    async def send_many(api: Api, n: int) -> None:
        for i in range(n):
            await api.send(cid, f"{api.server.port}-{i}")

    await asyncio.gather(send_many(alice, 25), send_many(bob_b, 25))
    seen_a = await ws_a.events(50, cid)
    seen_b = await ws_b.events(50, cid)
    expected = list(range(first, first + 50))
    assert [f["seq"] for f in seen_a] == expected
    assert [f["seq"] for f in seen_b] == expected
    assert seen_a == seen_b
    # Every event got onto the bus, so the publishing nodes cleared their outbox rows.
    await eventually(lambda: asyncio.to_thread(lambda: cluster.outbox_rows() == 0))
    for ws in (ws_a, ws_b):
        await ws.close()
    for api in (alice, bob_b):
        await api.aclose()


async def test_with_redis_down_sends_persist_and_still_reach_the_other_node(
    cluster: Cluster,
) -> None:
    alice, bob_b, cid, first = await alice_on_a_bob_on_b(cluster)
    ws_b = await WsClient.connect(cluster.b, token(bob_b))

    cluster.redis.kill()
    await eventually(lambda: _is(bus_status(cluster.b, bob_b), "degraded"))
    await eventually(lambda: _is(bus_status(cluster.a, alice), "degraded"))
    ready = (await alice.http.get("/readyz")).json()
    assert ready["status"] == "degraded", ready  # degraded, not failing: still serving
    for i in range(10):
        await alice.send(cid, f"during the outage {i}")  # 201 from the database alone
    during = await ws_b.events(10, cid)
    assert [f["seq"] for f in during] == list(range(first, first + 10))

    await asyncio.to_thread(cluster.redis.start)
    await eventually(lambda: _is(bus_status(cluster.a, alice), "ok"))
    await eventually(lambda: _is(bus_status(cluster.b, bob_b), "ok"))
    for i in range(5):
        await alice.send(cid, f"after {i}")
    after = await ws_b.events(5, cid)
    assert [f["seq"] for f in after] == list(range(first + 10, first + 15))
    # Nothing came twice: the events queued during the outage and published late
    # were dropped by seq.
    assert not events(await before_pong(ws_b), cid)
    await eventually(lambda: asyncio.to_thread(lambda: cluster.outbox_rows() == 0))
    await ws_b.close()
    for api in (alice, bob_b):
        await api.aclose()


async def test_with_redis_down_a_user_added_on_one_node_gets_the_channel_on_the_other(
    cluster: Cluster,
) -> None:
    alice, bob_b, _, _ = await alice_on_a_bob_on_b(cluster)
    team = (await alice.ok("GET", "/api/v1/teams", 200))["teams"][0]
    ws_b = await WsClient.connect(cluster.b, token(bob_b))
    cluster.redis.kill()
    await eventually(lambda: _is(bus_status(cluster.b, bob_b), "degraded"))
    channel = await alice.create_channel(team["id"], "later", private=True)
    await alice.join(channel["id"], bob_b)  # on node A, while B hears nothing from Redis
    await alice.send(channel["id"], "welcome")
    frames = await ws_b.events(2, channel["id"])
    assert [f["event"] for f in frames] == ["member.joined", "message.created"]
    assert frames[1]["data"]["body"] == "welcome"
    await asyncio.to_thread(cluster.redis.start)
    await eventually(lambda: _is(bus_status(cluster.b, bob_b), "ok"))
    await ws_b.close()
    for api in (alice, bob_b):
        await api.aclose()


async def test_one_send_retried_on_both_nodes_at_once_is_stored_once(cluster: Cluster) -> None:
    alice, bob_b, cid, _ = await alice_on_a_bob_on_b(cluster)
    alice_b = await on(cluster.b, alice)
    for i in range(20):
        body = {"channel_id": cid, "client_msg_id": f"race-{i}", "body": f"once {i}"}
        answers = await asyncio.gather(
            alice.request("POST", "/api/v1/messages", json=body),
            alice_b.request("POST", "/api/v1/messages", json=body),
        )
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
    bodies = [e["data"]["body"] for e in await alice.events(cid) if e["event"] == "message.created"]
    assert bodies == [f"once {i}" for i in range(20)]
    for api in (alice, alice_b, bob_b):
        await api.aclose()


async def _is(status: Awaitable[str], expected: str) -> bool:
    return await status == expected


async def test_a_logout_on_one_node_ends_the_login_s_token_and_sockets_on_the_other(
    cluster: Cluster,
) -> None:
    alice = await new_user(cluster.a, "alice")
    kept = await new_user(cluster.a, "kept")
    on_b = await on(cluster.b, alice)
    ws = await WsClient.connect(cluster.b, token(alice))
    other = await WsClient.connect(cluster.b, token(kept))
    try:
        resp = await alice.http.post(
            f"{cluster.a.url}/api/v1/auth/logout", json={"refresh_token": alice.refresh_token}
        )
        assert resp.status_code == 204
        # Node B reads the revocation from the database within its poll (a second).
        error = await ws.expect("error", timeout=10)
        assert error["code"] == "session_revoked"
        await asyncio.wait_for(ws.conn.wait_closed(), 10)
        assert ws.conn.close_code == 4401
        assert ws.conn.close_reason == "session_revoked"
        resp = await on_b.request("GET", "/api/v1/users/me")
        assert resp.status_code == 401
        assert resp.json()["code"] == "session_revoked"
        # Another user's socket on the same node is left alone.
        await other.send({"type": "ping", "id": "still-here"})
        assert (await other.expect("pong"))["id"] == "still-here"
    finally:
        await ws.close()
        await other.close()
        await on_b.aclose()
        await alice.aclose()
        await kept.aclose()
