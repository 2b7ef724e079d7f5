"""Helpers for the WebSocket protocol tests: frame waiting without sleeps, set-ups."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support import Api, ServerProcess, WsClient

Frame = dict[str, Any]


def token(api: Api) -> str:
    assert api.token is not None
    return api.token


async def until(ws: WsClient, pred: Callable[[Frame], bool], timeout: float = 10) -> list[Frame]:
    """Frames (heartbeats dropped) up to and including the first one matching `pred`."""
    out: list[Frame] = []
    while True:
        frame = await ws.recv(timeout)
        if frame["type"] == "heartbeat":
            continue
        out.append(frame)
        if pred(frame):
            return out


async def before_pong(ws: WsClient, timeout: float = 10) -> list[Frame]:
    """Ping, and every frame (heartbeats dropped) the server queued before the pong.

    The server answers a ping from the receive loop into the connection's one
    FIFO send queue, so whatever an earlier frame of ours caused comes first.
    """
    ping_id = uuid.uuid4().hex
    await ws.send({"type": "ping", "id": ping_id})
    frames = await until(ws, lambda f: f["type"] == "pong", timeout)
    assert frames[-1] == {"type": "pong", "id": ping_id}
    return frames[:-1]


async def read_until_closed(ws: WsClient, timeout: float = 20) -> tuple[list[Frame], int | None]:
    """Every frame until the server closes; (frames, close code the server sent)."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await ws.recv(timeout))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd is not None else None


def events(frames: list[Frame], channel_id: str | None = None) -> list[Frame]:
    return [
        f
        for f in frames
        if f["type"] == "event" and (channel_id is None or f["channel_id"] == channel_id)
    ]


def assert_gapless(frames: list[Frame], channel_id: str, first_seq: int, count: int) -> None:
    seqs = [f["seq"] for f in events(frames, channel_id)]
    assert seqs == list(range(first_seq, first_seq + count)), seqs


async def raw_connect(server: ServerProcess, **kw: Any) -> WsClient:
    """A connected but not yet authenticated client."""
    return WsClient(await websockets.connect(server.ws_url, **kw))


async def connect_slow_reader(
    server: ServerProcess, api: Api, cursors: dict[str, Any] | None = None
) -> WsClient:
    """A client that buffers almost nothing: one queued frame, a tiny socket buffer.

    Without compression, so every byte the server sends has to fit somewhere.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    conn = await websockets.connect(server.ws_url, max_queue=1, compression=None, sock=sock)
    client = WsClient(conn)
    frame: Frame = {"type": "auth", "token": token(api)}
    if cursors is not None:
        frame["cursors"] = cursors
    await client.send(frame)
    client.ready = await client.expect("ready")
    return client


async def send_raw(ws: WsClient, text: str) -> None:
    await ws.conn.send(text)


def dumps(frame: Frame) -> str:
    return orjson.dumps(frame).decode()


async def channel_last_seq(api: Api, channel_id: str) -> int:
    got = await api.ok("GET", f"/api/v1/channels/{channel_id}", 200)
    seq: int = got["last_seq"]
    return seq
