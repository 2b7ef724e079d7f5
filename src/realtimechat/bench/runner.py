"""The benchmark: L listeners on the SDK, C concurrent senders, one channel.

Latency is the listener's receive time minus the sender's send time, both read
from one monotonic clock in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import websockets

from realtimechat.bench.process import BenchServer, raise_fd_limit, sample
from realtimechat.bench.stats import Ledger, percentiles
from realtimechat_client import ChatClient, ClientOptions, LiveSession

Via = Literal["ws", "rest"]

SHAPES: dict[str, tuple[int, int, int]] = {
    "A": (1, 1, 2000),
    "B": (10, 8, 2000),
    "C": (100, 8, 500),
}
PASSWORD = "bench-password"


@dataclass
class BenchConfig:
    """What to run; shape names fill in listeners/senders/messages."""

    shape: str = "B"
    url: str | None = None
    listeners: int | None = None
    senders: int | None = None
    messages: int | None = None
    via: Via = "ws"
    duration_s: float | None = None
    window: int = 1  # sends in flight per sender
    channels: int = 1  # sender i sends to channel i % channels
    body_bytes: int = 100
    connections: int = 10_000  # for --shape conns
    drain_timeout_s: float = 30.0
    progress: bool = True


@dataclass
class Progress:
    """A one-line progress bar on stderr."""

    label: str
    total: int
    enabled: bool
    done: int = 0
    extra: Callable[[], str] = field(default=lambda: "")

    async def run(self) -> None:
        if not self.enabled:
            return
        started = time.perf_counter()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self.draw(time.perf_counter() - started)
                await asyncio.sleep(0.25)
        self.draw(time.perf_counter() - started)
        sys.stderr.write("\n")

    def draw(self, elapsed: float) -> None:
        width = 30
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        bar = "#" * int(frac * width)
        sys.stderr.write(
            f"\r{self.label} [{bar:<{width}}] {self.done}/{self.total} {elapsed:5.1f}s "
            f"{self.extra()}"
        )
        sys.stderr.flush()


async def _user(url: str, name: str) -> ChatClient:
    client = ChatClient(url, ClientOptions(max_retries=10))
    email = f"{name}-{uuid.uuid4().hex[:10]}@bench.invalid"
    await client.register(email, PASSWORD, name)
    await client.login(email, PASSWORD)
    return client


async def _gather_limited(n: int, make: Callable[[int], Awaitable[Any]], limit: int = 16) -> Any:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> Any:
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run one benchmark and return its report."""
    raise_fd_limit()
    server = None if cfg.url else BenchServer()
    url = cfg.url or await server.start()  # type: ignore[union-attr]
    try:
        if cfg.shape == "conns":
            report = await _idle_connections(url, cfg, server)
        else:
            report = await _fanout(url, cfg, server)
    finally:
        if server is not None:
            await server.stop()
    report["url"] = url if cfg.url else "embedded default (started by the bench)"
    return report


async def _fanout(url: str, cfg: BenchConfig, server: BenchServer | None) -> dict[str, Any]:
    default = SHAPES.get(cfg.shape, SHAPES["B"])
    n_listeners = cfg.listeners if cfg.listeners is not None else default[0]
    n_senders = cfg.senders if cfg.senders is not None else default[1]
    n_messages = cfg.messages if cfg.messages is not None else default[2]

    # Several nodes (comma-separated): senders and listeners alternate between them, a
    # listener starting on another node than the sender of the same index, so that
    # even shape A measures delivery across nodes.
    urls = url.split(",")
    owner = await _user(urls[0], "owner")
    team = await owner.create_team("bench")
    # Sender i sends to channel i % channels; every listener follows every channel.
    channels = [
        (await owner.create_channel(team["id"], f"bench-{k}", private=False))["id"]
        for k in range(max(1, cfg.channels))
    ]
    listeners: list[ChatClient] = await _gather_limited(
        n_listeners, lambda i: _user(urls[(i + 1) % len(urls)], f"listener{i}")
    )
    senders: list[ChatClient] = await _gather_limited(
        n_senders, lambda i: _user(urls[i % len(urls)], f"sender{i}")
    )
    for client in [*listeners, *senders]:
        me = await client.me()
        await owner.add_team_member(team["id"], user_id=me["id"])
        for channel in channels:
            await owner.add_channel_member(channel, me["id"])

    sent_at: dict[str, float] = {}
    expected: dict[str, set[str]] = {ch: set() for ch in channels}
    ack_latency: list[float] = []
    deliver_latency: list[float] = []
    # One ledger per listener and channel: seqs are per channel.
    ledgers = [{ch: Ledger() for ch in channels} for _ in listeners]
    sending_done = asyncio.Event()
    all_delivered = asyncio.Event()
    delivered = 0

    sessions: list[LiveSession] = []
    for client in listeners:
        live = LiveSession(client, start_from="last_seq")
        await live.start()
        sessions.append(live)
    await asyncio.wait_for(asyncio.gather(*(s.wait_connected() for s in sessions)), 60)

    def check_done() -> None:
        if sending_done.is_set() and all(
            len(lg.client_ids) >= len(expected[ch]) for by in ledgers for ch, lg in by.items()
        ):
            all_delivered.set()

    async def listen(live: LiveSession, ledger: dict[str, Ledger]) -> None:
        nonlocal delivered
        async for ev in live.events():
            if ev["event"] != "message.created" or ev["channel_id"] not in ledger:
                continue
            now = time.perf_counter()
            cmid = ev["data"]["client_msg_id"]
            ledger[ev["channel_id"]].record(ev["seq"], cmid)
            started = sent_at.get(cmid)
            if started is not None:
                deliver_latency.append(now - started)
            delivered += 1
            if sending_done.is_set():
                check_done()

    body = "x" * cfg.body_bytes
    deadline = time.perf_counter() + cfg.duration_s if cfg.duration_s else None
    per_sender = [n_messages // n_senders + (1 if i < n_messages % n_senders else 0)
                  for i in range(n_senders)]  # fmt: skip
    total_planned = sum(per_sender) if deadline is None else 0
    sent = 0

    sender_sessions: list[LiveSession] = []
    if cfg.via == "ws":
        for client in senders:
            live = LiveSession(client, start_from="last_seq")
            await live.start()
            sender_sessions.append(live)
        await asyncio.wait_for(asyncio.gather(*(s.wait_connected() for s in sender_sessions)), 60)

    async def send_one(i: int, k: int) -> None:
        nonlocal sent
        cmid = f"b{i}-{k}-{uuid.uuid4().hex[:8]}"
        channel = channels[i % len(channels)]
        expected[channel].add(cmid)
        started = time.perf_counter()
        sent_at[cmid] = started
        if cfg.via == "ws":
            await sender_sessions[i].send(channel, body, cmid)
        else:
            await senders[i].send_message(channel, body, cmid)
        ack_latency.append(time.perf_counter() - started)
        sent += 1

    async def sender(i: int) -> None:
        window = asyncio.Semaphore(cfg.window)
        tasks: set[asyncio.Task[None]] = set()
        k = 0
        while (deadline is None and k < per_sender[i]) or (
            deadline is not None and time.perf_counter() < deadline
        ):
            await window.acquire()
            task = asyncio.create_task(send_one(i, k))
            task.add_done_callback(lambda _t: window.release())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.gather(*tasks)

    readers = [asyncio.create_task(listen(s, lg)) for s, lg in zip(sessions, ledgers, strict=True)]
    before = sample(server.pid) if server else None
    bar = Progress(
        f"shape {cfg.shape}",
        total_planned or 0,
        cfg.progress,
        extra=lambda: f"sent {sent} delivered {delivered}",
    )
    progress = asyncio.create_task(bar.run())

    async def tick() -> None:
        while True:
            bar.done = sent
            if not bar.total:
                bar.total = max(1, sent)
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(tick())
    t0 = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(n_senders)))
    t_sent = time.perf_counter()
    sending_done.set()
    check_done()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_delivered.wait(), cfg.drain_timeout_s)
    t_end = time.perf_counter()
    after = sample(server.pid) if server else None
    ticker.cancel()
    bar.done = sent
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await progress

    for task in readers:
        task.cancel()
    for live in [*sessions, *sender_sessions]:
        await live.aclose()
    for client in [owner, *listeners, *senders]:
        await client.aclose()

    total_deliveries = sum(sum(lg.client_ids.values()) for by in ledgers for lg in by.values())
    lost = [sum(lg.lost(expected[ch]) for ch, lg in by.items()) for by in ledgers]
    duplicated = [sum(lg.duplicated() for lg in by.values()) for by in ledgers]
    n_sent = sum(len(ids) for ids in expected.values())
    report: dict[str, Any] = {
        "shape": cfg.shape,
        "listeners": n_listeners,
        "senders": n_senders,
        "channels": len(channels),
        "messages": n_sent,
        "via": cfg.via,
        "window": cfg.window,
        "body_bytes": cfg.body_bytes,
        "send_msgs_per_s": round(n_sent / (t_sent - t0), 1),
        "deliveries_per_s": round(total_deliveries / (t_end - t0), 1),
        "send_ack_ms": percentiles(ack_latency),
        "send_to_deliver_ms": percentiles(deliver_latency),
        "lost": sum(lost),
        "duplicated": sum(duplicated),
        "out_of_order": sum(lg.out_of_order for by in ledgers for lg in by.values()),
        "lost_per_listener": lost,
        "duplicated_per_listener": duplicated,
        "duration_s": round(t_end - t0, 3),
    }
    report["server"] = _server_report(before, after, t_end - t0)
    return report


def _server_report(before: Any, after: Any, wall: float) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    return {
        "rss_before_mib": round(before.rss_bytes / 2**20, 1),
        "rss_after_mib": round(after.rss_bytes / 2**20, 1),
        "cpu_s": round(after.cpu_s - before.cpu_s, 2),
        "cpu_util": round((after.cpu_s - before.cpu_s) / wall, 3) if wall else None,
    }


async def _idle_connections(
    url: str, cfg: BenchConfig, server: BenchServer | None
) -> dict[str, Any]:
    """Open up to `connections` idle, authenticated WebSockets; RSS per connection."""
    owner = await _user(url.split(",")[0], "owner")  # one node: RSS is per process
    team = await owner.create_team("bench")
    await owner.create_channel(team["id"], "idle", private=False)
    token = owner.access_token
    assert token is not None
    ws_url = owner.ws_url
    before = sample(server.pid) if server else None
    bar = Progress("shape conns", cfg.connections, cfg.progress)
    progress = asyncio.create_task(bar.run())
    conns: list[Any] = []
    failed = 0
    t0 = time.perf_counter()

    async def open_one(_: int) -> None:
        nonlocal failed
        try:
            ws = await websockets.connect(ws_url, open_timeout=30, ping_interval=None)
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame.get("type") != "ready":
                raise RuntimeError(frame)
            conns.append(ws)
        except Exception:
            failed += 1
        bar.done += 1

    await _gather_limited(cfg.connections, open_one, limit=64)
    connect_s = time.perf_counter() - t0
    after = sample(server.pid) if server else None
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await progress
    await _gather_limited(len(conns), lambda i: conns[i].close(), limit=256)
    await owner.aclose()
    report: dict[str, Any] = {
        "shape": "conns",
        "connections": len(conns),
        "failed": failed,
        "connect_s": round(connect_s, 2),
    }
    server_report = _server_report(before, after, connect_s)
    if server_report is not None and conns:
        delta = after.rss_bytes - before.rss_bytes  # type: ignore[union-attr]
        server_report["rss_per_connection_kib"] = round(delta / len(conns) / 1024, 1)
    report["server"] = server_report
    return report
