"""WebSocket hardening (issue 13): memory bounds, odd frames, token expiry and re-auth.

Each test runs a real server process and real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.ws_support import (
    Frame,
    before_pong,
    connect_slow_reader,
    dumps,
    raw_connect,
    read_until_closed,
    token,
    until,
)
from tests.support import (
    Api,
    ServerProcess,
    WsClient,
    new_user,
    running_server,
    team_channel,
    unique,
)

QUIET = {
    # No heartbeats or protocol pings during the test: a client that does not read
    # would otherwise be closed for not answering them.
    "RTC_WS__HEARTBEAT_MS": "600000",
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
}


def rss_bytes(server: ServerProcess) -> int:
    """The server process's resident set size, from /proc/<pid>/status (VmRSS)."""
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


async def test_big_id_pings_that_are_never_read_do_not_grow_the_server(tmp_path: Path) -> None:
    """Four sockets ping with 250 KB ids and never read: the node stays within 64 MB.

    Before the fix every pong echoed the id and waited in the socket's queue (bounded
    only to 2,048 frames): this grew the server by about 250 MB.
    """
    sockets, pings = 4, 256
    async with running_server(tmp_path, **QUIET) as server:
        reader = await new_user(server, "reader")
        team = await reader.create_team("t")
        channel = await reader.create_channel(team["id"], "general")
        attackers = []
        for _ in range(sockets):
            user = await new_user(server, "attacker")
            await reader.add_to_team(team["id"], user)
            await reader.join(channel["id"], user)
            attackers.append(user)
        watch = await WsClient.connect(server, token(reader))
        clients = [await connect_slow_reader(server, a) for a in attackers]
        big = orjson.dumps({"type": "ping", "id": "x" * 250_000}).decode()
        baseline = rss_bytes(server)

        async def flood(i: int, ws: WsClient) -> None:
            for _ in range(pings):
                await ws.conn.send(big)
            # The receive loop handles a socket's frames in order: when this send's
            # event reaches the watcher, every ping before it has been answered.
            await ws.send(
                {"type": "send", "channel_id": channel["id"], "client_msg_id": unique("c"),
                 "body": f"done-{i}"}
            )  # fmt: skip

        await asyncio.gather(*(flood(i, ws) for i, ws in enumerate(clients)))
        done = await watch.events(sockets, channel["id"], timeout=120)
        assert sorted(e["data"]["body"] for e in done) == [f"done-{i}" for i in range(sockets)]
        growth = rss_bytes(server) - baseline
        assert growth < 64 * 1024 * 1024, f"server grew by {growth / 2**20:.0f} MiB"
        for ws in clients:
            ws.conn.transport.abort()
        await watch.close()
        for api in (reader, *attackers):
            await api.aclose()


async def test_a_client_that_does_not_read_is_closed_at_the_byte_bound(tmp_path: Path) -> None:
    """Small answers that pile up pass the byte bound long before the frame bound."""
    env = {**QUIET, "RTC_WS__SEND_QUEUE": "100000", "RTC_WS__SEND_QUEUE_BYTES": "16384"}
    async with running_server(tmp_path, **env) as server:
        api = await new_user(server, "slow")
        ws = await connect_slow_reader(server, api)
        ping = orjson.dumps({"type": "ping", "id": "p" * 100}).decode()
        for _ in range(4000):  # about 500 KB of pongs: more than the socket buffers hold
            await ws.conn.send(ping)
        frames, code = await read_until_closed(ws, timeout=30)
        assert code == 1013
        assert len(frames) < 4000
        await api.aclose()


# ---- frames the protocol does not have: an answer, never an abnormal close ----------------


def nested(frame: dict[str, object], key: str, depth: int = 254) -> str:
    """`frame` as JSON text with `key` set to arrays nested `depth` deep.

    In a frame, 254 levels are one more than orjson will write.
    """
    head = dumps(frame)[:-1]
    return f'{head},"{key}":' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    "first",
    [orjson.dumps({"type": "auth", "token": "whatever"}), b"\x00\xffnot even text"],
    ids=["binary-auth", "binary-garbage"],
)
async def test_a_binary_first_frame_is_refused_with_4400(
    server: ServerProcess, first: bytes
) -> None:
    ws = await raw_connect(server)
    await ws.conn.send(first)
    frames, code = await read_until_closed(ws)
    assert code == 4400
    assert [(f["type"], f["code"]) for f in frames] == [("error", "malformed_frame")]


BIG = "x" * 200_000


@pytest.mark.parametrize(
    ("raw", "code", "field", "ref"),
    [
        (orjson.dumps({"type": "ping", "id": 7}), "malformed_frame", None, None),  # binary
        (nested({"type": "ping"}, "id"), "validation_error", "id", "ping"),
        (dumps({"type": "ping", "id": {"a": 1}}), "validation_error", "id", "ping"),
        (dumps({"type": "ping", "id": BIG}), "validation_error", "id", "ping"),
        (
            nested({"type": "send", "channel_id": "c", "body": "b"}, "client_msg_id"),
            "validation_error",
            "client_msg_id",
            "send",
        ),
        (dumps({"type": "typing", "channel_id": BIG}), "validation_error", "channel_id", "typing"),
        (dumps({"type": BIG}), "validation_error", "type", None),
        (nested({"type": "teleport"}, "id"), "validation_error", "id", "teleport"),
    ],
    ids=[
        "binary",
        "ping-id-nested-254",
        "ping-id-object",
        "ping-id-200kb",
        "send-client-msg-id-nested",
        "typing-channel-id-200kb",
        "type-200kb",
        "unknown-type-nested-id",
    ],
)
async def test_an_odd_frame_in_session_gets_a_small_error_and_the_session_goes_on(
    server: ServerProcess,
    alice: Api,
    raw: str | bytes,
    code: str,
    field: str | None,
    ref: str | None,
) -> None:
    ws = await WsClient.connect(server, token(alice))
    await ws.conn.send(raw)
    (err,) = await before_pong(ws)
    assert err["type"] == "error"
    assert err["code"] == code
    assert err.get("field") == field
    assert err.get("ref") == ref
    assert len(dumps(err)) < 1024  # nothing of the odd value is echoed
    assert await before_pong(ws) == []  # still served
    await ws.close()


async def test_a_resume_cursor_with_a_huge_channel_id_is_answered_without_it(
    server: ServerProcess, alice: Api
) -> None:
    ws = await WsClient.connect(server, token(alice))
    await ws.send({"type": "resume", "cursors": {BIG: 1}})
    (err,) = await before_pong(ws)
    assert (err["code"], err["ref"]) == ("validation_error", "resume")
    assert len(dumps(err)) < 1024
    await ws.close()


# ---- re-authentication and token expiry ---------------------------------------------------


async def refreshed(api: Api) -> dict[str, Any]:
    """A fresh token pair for the same login (the refresh token rotates)."""
    pair: dict[str, Any] = await api.ok(
        "POST", "/api/v1/auth/refresh", 200, json={"refresh_token": api.refresh_token}
    )
    api.refresh_token = pair["refresh_token"]
    return pair


async def closed(ws: WsClient, timeout: float = 20) -> tuple[list[Frame], int | None, str]:
    """Every frame until the server closes; (frames, close code, close reason)."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await ws.recv(timeout))
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return frames, None, ""
        return frames, exc.rcvd.code, exc.rcvd.reason


async def test_a_fresh_token_of_the_same_user_re_authenticates_the_socket(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    ws = await WsClient.connect(server, token(alice))
    assert isinstance(ws.ready["expires_at"], int)
    pair = await refreshed(alice)
    await ws.send({"type": "auth", "token": pair["access_token"]})
    (ok,) = await before_pong(ws)
    assert ok["type"] == "auth_ok"
    assert ok["expires_at"] >= ws.ready["expires_at"]
    await ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "auth", "token": "not.a.jwt"}, "unauthorized"),
        ({"type": "auth"}, "validation_error"),
        ({"type": "auth", "token": "bob"}, "forbidden"),
    ],
    ids=["invalid-token", "no-token", "another-users-token"],
)
async def test_a_refused_re_auth_is_an_error_and_keeps_the_socket(
    server: ServerProcess, alice: Api, bob: Api, frame: Frame, code: str
) -> None:
    channel = await team_channel(alice, bob)
    if frame.get("token") == "bob":
        frame = {**frame, "token": token(bob)}
    ws = await WsClient.connect(server, token(alice))
    await ws.send(frame)
    (err,) = await before_pong(ws)
    assert (err["type"], err["code"], err["ref"]) == ("error", code, "auth")
    # Still alice's socket: her channel's events arrive, under her name.
    sent = await bob.send(channel["id"], "still yours")
    (event,) = await ws.events(1, channel["id"])
    assert event["data"] == sent
    ok = await ws_send(ws, channel["id"], "mine")
    assert ok["message"]["sender_id"] == alice.user_id
    await ws.close()


async def ws_send(ws: WsClient, channel_id: str, body: str) -> Frame:
    """Send over the socket; the answer (send_ok or an error for this id)."""
    cmid = unique("c")
    await ws.send({"type": "send", "channel_id": channel_id, "client_msg_id": cmid, "body": body})
    frames = await until(
        ws, lambda f: f["type"] in ("send_ok", "error") and f.get("client_msg_id") == cmid
    )
    return frames[-1]


SHORT_TOKENS = {**QUIET, "RTC_AUTH__ACCESS_TTL_S": "2", "RTC_WS__REAUTH_GRACE_S": "1"}


async def until_wall_clock(epoch_s: float) -> None:
    """Wait for the wall clock (the one tokens expire by) to pass `epoch_s`."""
    await asyncio.sleep(max(0.0, epoch_s - time.time()))


async def test_a_socket_whose_token_expires_is_closed_after_the_grace(tmp_path: Path) -> None:
    async with running_server(tmp_path, **SHORT_TOKENS) as server:
        alice, bob = await new_user(server, "alice"), await new_user(server, "bob")
        channel = await team_channel(alice, bob)
        ws = await WsClient.connect(server, token(alice))
        deadline = ws.ready["expires_at"] + 1
        await until_wall_clock(deadline + 0.05)
        # Past expiry and grace: whatever comes now is not served.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(
                {"type": "send", "channel_id": channel["id"], "client_msg_id": unique("c"),
                 "body": "too late"}
            )  # fmt: skip
        frames, code, reason = await closed(ws)
        assert time.time() >= deadline
        assert (code, reason) == (4401, "token_expired")
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "token_expired"
        assert not [f for f in frames if f["type"] == "send_ok"]
        fresh = await refreshed(bob)
        bob.authorize(fresh["access_token"])
        assert [e for e in await bob.events(channel["id"]) if e["event"] == "message.created"] == []
        await alice.aclose()
        await bob.aclose()


async def test_re_auth_within_the_grace_keeps_the_socket_open(tmp_path: Path) -> None:
    async with running_server(tmp_path, **SHORT_TOKENS) as server:
        alice, bob = await new_user(server, "alice"), await new_user(server, "bob")
        channel = await team_channel(alice, bob)
        ws = await WsClient.connect(server, token(alice))
        first_expiry = ws.ready["expires_at"]
        await until_wall_clock(first_expiry + 0.05)  # expired, within the grace
        await ws.send({"type": "auth", "token": token(alice)})  # the expired one: refused
        (err,) = await before_pong(ws)
        assert (err["code"], err["ref"]) == ("token_expired", "auth")
        pair = await refreshed(alice)
        await ws.send({"type": "auth", "token": pair["access_token"]})
        (ok,) = await before_pong(ws)
        assert ok["type"] == "auth_ok"
        assert ok["expires_at"] > first_expiry + 1
        await until_wall_clock(first_expiry + 1 + 1.5)  # the old deadline and a sweep passed
        bob.authorize((await refreshed(bob))["access_token"])
        sent = await bob.send(channel["id"], "still here?")
        (event,) = await ws.events(1, channel["id"])
        assert event["data"] == sent
        # And the new token's expiry ends it in turn.
        _, code, reason = await closed(ws)
        assert (code, reason) == (4401, "token_expired")
        assert time.time() >= ok["expires_at"] + 1
        await alice.aclose()
        await bob.aclose()
