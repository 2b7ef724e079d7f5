"""A connection's bounds and the end of its authentication, driven without a network.

The socket here records frames (and can stop taking them, like a client that does not
read); the Hub and Connection are the real ones; time is a manual clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from prometheus_client import REGISTRY

from realtimechat.domain.models import Event
from realtimechat.edge.connection import Connection, SendFrame
from realtimechat.edge.hub import Hub
from realtimechat.services.auth import Principal
from tests.support import ManualClock


class GatedSocket:
    """Stands in for a WebSocket whose client reads only while the gate is open."""

    def __init__(self, *, open_: bool = True) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()
        self.closed_evt = asyncio.Event()
        self.wrote = asyncio.Event()
        if open_:
            self.gate.set()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(orjson.loads(text))
        self.wrote.set()

    async def until_sent(self, n: int) -> None:
        while len(self.sent) < n:
            self.wrote.clear()
            await asyncio.wait_for(self.wrote.wait(), 5)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.closed_evt.set()


async def no_events(channel_id: str, after: int, limit: int) -> list[Event]:
    return []


def connection(
    ws: GatedSocket,
    principal: Principal,
    *,
    queue_size: int = 100,
    queue_bytes: int = 1 << 20,
    grace_s: float = 30.0,
) -> Connection:
    return Connection(
        ws,  # type: ignore[arg-type]
        user_id=principal.user_id,
        session_id="socket",
        queue_size=queue_size,
        replay_limit=100,
        fetch=no_events,
        close_timeout_s=5.0,
        queue_bytes=queue_bytes,
        principal=principal,
        reauth_grace_s=grace_s,
    )


def closes(reason: str) -> float:
    return REGISTRY.get_sample_value("rtc_ws_closes_total", {"reason": reason}) or 0.0


async def test_a_client_that_does_not_read_is_closed_when_its_queue_passes_the_byte_bound() -> None:
    ws = GatedSocket(open_=False)
    conn = connection(ws, Principal("U"), queue_size=1000, queue_bytes=10_000)
    conn.start()
    before = closes("queue_bytes")
    frame: dict[str, object] = {
        "type": "pong",
        "id": "x" * 900,
    }  # about 1 KB each: 10 fit, far below 1,000 frames
    for _ in range(9):
        conn.send_frame(frame)
    await asyncio.sleep(0)  # the sender takes the first one and waits on the socket
    assert not conn.closing
    assert 7_000 < conn.queued_bytes <= 10_000
    for _ in range(3):
        conn.send_frame(frame)
    assert conn.closing
    await asyncio.wait_for(ws.closed_evt.wait(), 5)
    assert ws.closed == (1013, "send queue full; resume from your cursors")
    assert closes("queue_bytes") == before + 1


async def test_the_queued_bytes_go_back_to_zero_as_frames_leave() -> None:
    ws = GatedSocket(open_=False)
    conn = connection(ws, Principal("U"), queue_bytes=10_000)
    conn.start()
    for i in range(5):
        conn.offer(SendFrame(orjson.dumps({"type": "pong", "id": f"é{i}"}).decode()))
    assert conn.queued_bytes > 0
    ws.gate.set()
    await ws.until_sent(5)
    assert conn.queued_bytes == 0
    await conn.stop()


async def test_an_expired_token_ends_the_socket_only_after_the_grace() -> None:
    clock = ManualClock()
    hub = Hub(10**9, clock=clock)
    ws = GatedSocket()
    conn = connection(ws, Principal("U", "L", int(clock.now) + 60), grace_s=30)
    hub.register(conn)
    conn.start()
    clock.advance(60 + 29)
    assert hub.expire() == 0
    clock.advance(2)
    assert hub.expire() == 1
    await asyncio.wait_for(ws.closed_evt.wait(), 5)
    assert ws.closed == (4401, "token_expired")
    assert [f["code"] for f in ws.sent] == ["token_expired"]
    assert hub.expire() == 0  # once


async def test_a_fresh_token_moves_the_deadline_and_the_login() -> None:
    clock = ManualClock()
    hub = Hub(10**9, clock=clock)
    ws = GatedSocket()
    conn = connection(ws, Principal("U", "L1", int(clock.now) + 60), grace_s=30)
    hub.register(conn)
    conn.start()
    clock.advance(70)  # expired, within the grace
    hub.reauthenticate(conn, Principal("U", "L2", int(clock.now) + 60))
    clock.advance(50)
    assert hub.expire() == 0
    assert hub.close_sessions(["L1"]) == 0  # the old login no longer holds it
    assert hub.close_sessions(["L2"]) == 1
    await asyncio.wait_for(ws.closed_evt.wait(), 5)
    assert ws.closed == (4401, "session_revoked")


async def test_close_sessions_ends_every_socket_of_those_logins_and_no_other() -> None:
    hub = Hub(10**9)
    socks = {name: GatedSocket() for name in ("a1", "a2", "b", "old")}
    logins = {"a1": "LA", "a2": "LA", "b": "LB", "old": None}
    conns = {}
    for name, ws in socks.items():
        conns[name] = connection(ws, Principal("U", logins[name], 0))
        hub.register(conns[name])
        conns[name].start()
    before = closes("session_revoked")
    assert hub.close_sessions(["LA", "unknown"]) == 2
    for name in ("a1", "a2"):
        await asyncio.wait_for(socks[name].closed_evt.wait(), 5)
        assert socks[name].closed == (4401, "session_revoked")
        assert [(f["type"], f["code"]) for f in socks[name].sent] == [("error", "session_revoked")]
    assert closes("session_revoked") == before + 2
    for name in ("b", "old"):
        assert socks[name].closed is None
        assert not conns[name].closing
    hub.unregister(conns["a1"])
    assert hub.close_sessions(["LA"]) == 0  # closing already


async def test_a_revoked_socket_gets_nothing_queued_before_the_revocation() -> None:
    hub = Hub(10**9)
    ws = GatedSocket(open_=False)
    conn = connection(ws, Principal("U", "L", 0))
    hub.register(conn)
    conn.start()
    for i in range(5):
        conn.send_frame({"type": "typing", "n": i})
    await asyncio.sleep(0)  # the sender holds frame 0, waiting on the socket
    hub.close_sessions(["L"])
    conn.send_frame({"type": "typing", "n": 99})  # after the end: dropped
    ws.gate.set()
    await asyncio.wait_for(ws.closed_evt.wait(), 5)
    assert [f.get("n", f.get("code")) for f in ws.sent] == [0, "session_revoked"]


async def test_a_revoked_socket_that_does_not_read_is_closed_after_the_close_timeout() -> None:
    hub = Hub(10**9)
    ws = GatedSocket(open_=False)
    conn = Connection(
        ws,  # type: ignore[arg-type]
        user_id="U",
        session_id="socket",
        queue_size=10,
        replay_limit=10,
        fetch=no_events,
        close_timeout_s=0.05,
        principal=Principal("U", "L", 0),
    )
    hub.register(conn)
    conn.start()
    conn.send_frame({"type": "typing"})
    await asyncio.sleep(0)
    hub.close_sessions(["L"])
    await asyncio.wait_for(ws.closed_evt.wait(), 5)
    assert ws.closed == (4401, "session_revoked")
    assert ws.sent == []
