"""The hub and a connection's sender, driven event by event (no server, no network).

The socket here records frames; everything else is the real Hub and Connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.models import Event
from realtimechat.edge.connection import Connection
from realtimechat.edge.hub import Hub


class RecordingSocket:
    """Stands in for a WebSocket: keeps what was sent, yields like a real write."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.marked = asyncio.Event()

    async def send_text(self, text: str) -> None:
        frame = orjson.loads(text)
        if frame["type"] == "marker":
            self.marked.set()
            return
        self.sent.append(frame)
        await asyncio.sleep(0)  # a real write yields to the loop too

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.sent if f["type"] == "event"]


def event(seq: int, type_: str, data: dict[str, Any], **kw: Any) -> Event:
    return Event("C", seq, type_, orjson.dumps(data), 0, **kw)


class Store:
    def __init__(self) -> None:
        self.events: dict[int, Event] = {}

    def add(self, *evs: Event) -> None:
        for ev in evs:
            self.events[ev.seq] = ev

    async def fetch(self, channel_id: str, after: int, limit: int) -> list[Event]:
        return [self.events[s] for s in sorted(self.events) if s > after][:limit]


async def settle(conn: Connection, ws: RecordingSocket) -> None:
    """Wait until the sender has sent everything queued before this call."""
    ws.marked.clear()
    conn.send_frame({"type": "marker"})
    await asyncio.wait_for(ws.marked.wait(), 5)


def connect(hub: Hub, store: Store, ws: RecordingSocket, user: str = "U") -> Connection:
    conn = Connection(
        ws,  # type: ignore[arg-type]
        user_id=user,
        session_id="s",
        queue_size=100,
        replay_limit=500,
        fetch=store.fetch,
    )
    hub.register(conn)
    conn.start()
    return conn


async def test_leave_and_rejoin_in_one_batch_keep_what_was_queued_before() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 4)
    evs = [
        event(5, "message.created", {"body": "hi"}),
        event(6, "member.left", {"user_id": "U"}, left=("U",)),
        event(7, "message.created", {"body": "said while away"}),
        event(8, "member.joined", {"user_id": "U"}, joined=("U",)),
    ]
    store.add(*evs)
    for ev in evs:
        hub.on_event(ev)
    await settle(conn, ws)
    assert ws.seqs() == [5, 6, 8]


async def test_typing_does_not_reach_a_member_whose_replay_ended_the_subscription() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    store.add(*(event(s, "message.created", {}) for s in range(1, 5)))
    left = event(5, "member.left", {"user_id": "U"}, left=("U",))
    store.add(left)
    conn = connect(hub, store, ws)
    hub.on_event(left)  # committed between the connection's read (last_seq 4) and subscribe
    hub.subscribe(conn, "C", 4, known_last=4)
    await settle(conn, ws)
    hub.on_ephemeral(Ephemeral("C", "V", "typing"))
    later = event(6, "message.created", {"body": "after removal"})
    store.add(later)
    hub.on_event(later)
    await settle(conn, ws)
    assert ws.seqs() == [5]
    assert not [f for f in ws.sent if f["type"] == "typing"]


async def test_a_failing_replay_closes_the_socket_so_the_client_resumes() -> None:
    hub, ws = Hub(10**9), RecordingSocket()

    async def broken(channel_id: str, after: int, limit: int) -> list[Event]:
        raise RuntimeError("database is gone")

    conn = Connection(
        ws,  # type: ignore[arg-type]
        user_id="U",
        session_id="s",
        queue_size=10,
        replay_limit=500,
        fetch=broken,
    )
    hub.register(conn)
    conn.start()
    hub.subscribe(conn, "C", 0, known_last=3)  # needs a replay of 1..3
    await conn.wait_closed()
    assert ws.closed_with == 1011


def test_prune_forgets_only_quiet_channels_nobody_follows() -> None:
    hub, store = Hub(10**9), Store()
    conn = Connection(
        RecordingSocket(),  # type: ignore[arg-type]
        user_id="U",
        session_id="s",
        queue_size=10,
        replay_limit=500,
        fetch=store.fetch,
    )
    hub.register(conn)
    hub.subscribe(conn, "C", 0)
    for channel_id in ("C", "D"):
        hub.on_event(Event(channel_id, 1, "message.created", b"{}", 0))
    hub.prune(before=float("inf"))
    assert hub.published_seq == {"C": 1}


class CountingStore(Store):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.read = asyncio.Event()

    async def fetch(self, channel_id: str, after: int, limit: int) -> list[Event]:
        self.reads += 1
        self.read.set()
        return await super().fetch(channel_id, after, limit)


def messages(*seqs: int) -> list[Event]:
    return [event(s, "message.created", {"n": s}) for s in seqs]


async def test_an_event_that_overtook_its_gap_waits_for_it_and_nobody_reads() -> None:
    hub, store = Hub(10**9, reorder_ms=60_000), CountingStore()
    sockets = [RecordingSocket() for _ in range(3)]
    conns = [connect(hub, store, ws, user=f"U{i}") for i, ws in enumerate(sockets)]
    for conn in conns:
        hub.subscribe(conn, "C", 0)
    one, two, three, four = messages(1, 2, 3, 4)
    store.add(one, two, three, four)
    hub.on_event(one)
    hub.on_event(three)  # committed here while 2 is still on its way from another node
    hub.on_event(four)
    hub.on_event(two)
    for conn, ws in zip(conns, sockets, strict=True):
        await settle(conn, ws)
        assert ws.seqs() == [1, 2, 3, 4]
    assert store.reads == 0


async def test_a_gap_that_never_arrives_is_filled_from_the_store_after_the_hold() -> None:
    hub, store, ws = Hub(10**9, reorder_ms=20), CountingStore(), RecordingSocket()
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 0)
    one, two, three = messages(1, 2, 3)
    store.add(one, two, three)
    hub.on_event(one)
    hub.on_event(three)  # 2 was lost with the node that committed it
    await settle(conn, ws)
    assert ws.seqs() == [1]  # held, not yet given up on
    await asyncio.wait_for(store.read.wait(), 5)
    await settle(conn, ws)
    assert ws.seqs() == [1, 2, 3]
    assert store.reads == 1


async def test_a_catch_up_releases_what_is_held_and_stops_waiting_for_the_bus() -> None:
    hub, store, ws = Hub(10**9, reorder_ms=60_000), CountingStore(), RecordingSocket()
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 0)
    one, two, three, four, five = messages(1, 2, 3, 4, 5)
    store.add(one, two, three, four, five)
    hub.on_event(one)
    hub.on_event(three)
    hub.catch_up("C", 4)  # the database is ahead of the bus, which lost 2 and 4
    hub.on_event(five)  # after the catch-up nothing is missing: not held
    await settle(conn, ws)
    assert ws.seqs() == [1, 2, 3, 4, 5]
