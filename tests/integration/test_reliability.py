"""Reliability through real server processes: ordering under load, restarts, drains, crashes.

Review findings covered: C-2 (gapless per-channel seqs, live delivery in order),
C-3 (a retried send is answered with the first message, across a restart and a
crash), C-5 (a message and its event commit together or not at all) and M-1
(SIGTERM drains WebSockets with going_away + 1012 and lets in-flight requests
finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.uri import parse_uri

from tests.support import Api, ServerProcess, WsClient, new_user, running_server, unique

SENDERS = 50
PER_SENDER = 8
TIMEOUT_S = 20  # an upper bound for something that should happen, never a pause


# ---- helpers ------------------------------------------------------------------
def send_body(channel_id: str, body: str, client_msg_id: str) -> dict[str, str]:
    return {"channel_id": channel_id, "body": body, "client_msg_id": client_msg_id}


def assert_gapless(events: list[dict[str, Any]], last_seq: int | None = None) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"seqs are not 1..N without gaps: {seqs}"
    if last_seq is not None:
        assert len(seqs) == last_seq


def messages_by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """message.created events by message id; fails on a message stored twice."""
    out: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev["event"] == "message.created":
            msg_id = ev["data"]["id"]
            assert msg_id not in out, f"message {msg_id} has two events"
            out[msg_id] = ev
    return out


async def team_channel(owner: Api, *members: Api) -> str:
    team = await owner.create_team(unique("team"))
    for m in members:
        await owner.add_to_team(team["id"], m)
    channel = await owner.create_channel(team["id"], unique("chan"))
    for m in members:
        await owner.join(channel["id"], m)
    channel_id: str = channel["id"]
    return channel_id


async def wait_exit(server: ServerProcess) -> int:
    assert server.proc is not None
    return await asyncio.wait_for(asyncio.to_thread(server.proc.wait), TIMEOUT_S)


def host_port(server: ServerProcess) -> tuple[str, int]:
    uri = parse_uri(server.ws_url)
    return uri.host, uri.port


async def close_code(ws: WsClient) -> int | None:
    """Read until the server closes the connection; its close code.

    Only heartbeats may come before the close.
    """
    try:
        while True:
            frame = await ws.recv(TIMEOUT_S)
            assert frame["type"] == "heartbeat", frame
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


class StalledWs:
    """A WebSocket client (websockets' sans-I/O protocol) that reads only when told to.

    On shutdown the server closes each WebSocket with a closing handshake. Until
    this client answers the server's close frame, the node's drain cannot end:
    the test decides how long the node stays in its draining state.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.proto = proto
        self.pending: list[Request | Response | Frame] = []

    @classmethod
    async def open(cls, server: ServerProcess, token: str) -> StalledWs:
        host, port = host_port(server)
        reader, writer = await asyncio.open_connection(host, port)
        proto = ClientProtocol(parse_uri(server.ws_url))
        client = cls(reader, writer, proto)
        proto.send_request(proto.connect())
        await client._flush()
        handshake = await client._next()
        assert isinstance(handshake, Response)
        assert handshake.status_code == 101
        proto.send_text(orjson.dumps({"type": "auth", "token": token}))
        await client._flush()
        assert (await client.text())["type"] == "ready"
        return client

    async def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.writer.write(data)
            elif self.writer.can_write_eof():
                self.writer.write_eof()
        await self.writer.drain()

    async def _next(self) -> Request | Response | Frame:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT_S)
            if data:
                self.proto.receive_data(data)
            else:
                self.proto.receive_eof()
            self.pending.extend(self.proto.events_received())
            await self._flush()  # answers pings and the close frame
            if not data and not self.pending:
                raise EOFError("connection closed")
        return self.pending.pop(0)

    async def frame(self) -> Frame:
        """The next frame that is not a heartbeat, ping or pong."""
        while True:
            event = await self._next()
            assert isinstance(event, Frame)
            if event.opcode in (Opcode.PING, Opcode.PONG):
                continue
            if event.opcode is Opcode.TEXT and b'"heartbeat"' in event.data:
                continue
            return event

    async def text(self) -> dict[str, Any]:
        frame = await self.frame()
        assert frame.opcode is Opcode.TEXT, frame
        value: dict[str, Any] = orjson.loads(frame.data)
        return value

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def raw_http(
    server: ServerProcess, method: str, path: str, body: bytes
) -> asyncio.Task[tuple[int, bytes]]:
    """Write one HTTP/1.1 request whole to the socket; a task for its (status, body).

    When this returns, the request's bytes are in the server's socket buffer.
    """
    host, port = host_port(server)
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()

    async def answer() -> tuple[int, bytes]:
        try:
            raw = await reader.read()  # Connection: close, so the answer ends at EOF
        finally:
            writer.close()
        status_line, _, rest = raw.partition(b"\r\n")
        _, _, payload = rest.partition(b"\r\n\r\n")
        return int(status_line.split()[1]), payload

    return asyncio.create_task(answer())


# ---- 1. ordering under concurrent senders (C-2) ----------------------------------
async def test_50_concurrent_senders_get_gapless_unique_seqs_in_send_order(
    server: ServerProcess, alice: Api
) -> None:
    senders = list(await asyncio.gather(*(new_user(server, f"s{i}") for i in range(SENDERS))))
    listener: WsClient | None = None
    try:
        team = await alice.create_team(unique("storm"))
        await asyncio.gather(*(alice.add_to_team(team["id"], s) for s in senders))
        channel = await alice.create_channel(team["id"], unique("storm"))
        cid = channel["id"]
        listener = await WsClient.connect(server, alice.token or "")
        (start,) = [c["last_seq"] for c in listener.ready["channels"] if c["id"] == cid]
        assert start == 1
        await asyncio.gather(*(alice.join(cid, s) for s in senders))  # the joins race too

        async def send_in_order(i: int, api: Api) -> list[dict[str, Any]]:
            out = []
            for k in range(PER_SENDER):
                msg = await api.ok(
                    "POST",
                    "/api/v1/messages",
                    201,
                    json=send_body(cid, f"{i}:{k}", unique(f"s{i}-{k}")),
                )
                out.append(msg)
            return out

        sent = await asyncio.gather(*(send_in_order(i, s) for i, s in enumerate(senders)))
        n = 1 + SENDERS + SENDERS * PER_SENDER

        events = await alice.events(cid)
        assert_gapless(events)
        assert len(events) == n
        assert Counter(e["event"] for e in events) == {
            "channel.created": 1,
            "member.joined": SENDERS,
            "message.created": SENDERS * PER_SENDER,
        }
        assert events[0]["event"] == "channel.created"
        joined = [e["data"]["user_id"] for e in events if e["event"] == "member.joined"]
        assert sorted(joined) == sorted(s.user_id for s in senders)

        stored = messages_by_id(events)  # each message exactly once
        everything = [m for per_sender in sent for m in per_sender]
        assert set(stored) == {m["id"] for m in everything}
        for m in everything:
            ev = stored[m["id"]]
            assert ev["seq"] == m["seq"]
            assert ev["data"]["body"] == m["body"]
            assert ev["data"]["sender_id"] == m["sender_id"]

        for i, (api, per_sender) in enumerate(zip(senders, sent, strict=True)):
            seqs = [m["seq"] for m in per_sender]
            assert seqs == sorted(set(seqs)), f"sender {i} saw seqs out of order: {seqs}"
            in_log = [
                e["data"]["body"]
                for e in events
                if e["event"] == "message.created" and e["data"]["sender_id"] == api.user_id
            ]
            assert in_log == [f"{i}:{k}" for k in range(PER_SENDER)]

        # Live delivery: the member connected before the storm got every later event
        # once, in seq order, carrying what the events page carries.
        frames = await listener.events(n - start, cid)
        assert [f["seq"] for f in frames] == list(range(start + 1, n + 1))
        assert [f["data"] for f in frames] == [e["data"] for e in events[start:]]
    finally:
        if listener is not None:
            await listener.close()
        await asyncio.gather(*(s.aclose() for s in senders))


# ---- 2. idempotent retry across a restart (C-3) ---------------------------------
async def test_a_send_retried_after_a_restart_answers_the_first_message(tmp_path: Path) -> None:
    cmid = unique("retry")
    async with running_server(tmp_path) as first:
        alice = await new_user(first, "alice")
        try:
            cid = await team_channel(alice)
            sent = await alice.ok(
                "POST", "/api/v1/messages", 201, json=send_body(cid, "only once", cmid)
            )
            token = alice.token or ""
        finally:
            await alice.aclose()
        assert await first.signal(signal.SIGTERM) == 0

    async with running_server(tmp_path) as second:  # same data_dir: same secret, same data
        again = Api(second, token)
        try:
            retry = await again.request(
                "POST", "/api/v1/messages", json=send_body(cid, "only once", cmid)
            )
            assert retry.status_code == 200, retry.text
            assert retry.json()["id"] == sent["id"]
            assert retry.json()["seq"] == sent["seq"]
            assert retry.json()["body"] == "only once"

            events = await again.events(cid)
            assert_gapless(events)
            assert list(messages_by_id(events)) == [sent["id"]]
            history = await again.ok("GET", f"/api/v1/channels/{cid}/messages", 200)
            assert [m["id"] for m in history["messages"]] == [sent["id"]]

            # The same id with another body is still refused after the restart.
            other = await again.request(
                "POST", "/api/v1/messages", json=send_body(cid, "different", cmid)
            )
            assert other.status_code == 422, other.text
            nxt = await again.send(cid, "next")
            assert nxt["seq"] == sent["seq"] + 1
        finally:
            await again.aclose()


# ---- 3. graceful drain on SIGTERM (M-1) -----------------------------------------
async def test_sigterm_sends_going_away_then_1012_and_exits_0(tmp_path: Path) -> None:
    # The stalled client holds the drain for up to the close timeout: long enough for
    # the checks below on a loaded machine.
    env = {"RTC_DRAIN_S": "30", "RTC_WS__CLOSE_TIMEOUT_S": "30"}
    async with running_server(tmp_path, **env) as srv:
        alice = await new_user(srv, "alice")
        clients: list[WsClient] = []
        try:
            await team_channel(alice)
            clients = [await WsClient.connect(srv, alice.token or "") for _ in range(3)]
            held = await StalledWs.open(srv, alice.token or "")
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGTERM)

            for ws in clients:
                going = await ws.expect("going_away", timeout=TIMEOUT_S)
                assert isinstance(going["reconnect_after_ms"], int)
                assert going["reconnect_after_ms"] > 0
                assert await close_code(ws) == 1012

            # The stalled client has not answered its close frame, so the node is
            # still draining: it says so, and turns new WebSockets away.
            ready = await alice.request("GET", "/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "draining"
            async with websockets.connect(srv.ws_url) as late:
                frame = orjson.loads(await asyncio.wait_for(late.recv(), TIMEOUT_S))
                assert frame["type"] == "going_away"
                with pytest.raises(ConnectionClosed) as refused:
                    await asyncio.wait_for(late.recv(), TIMEOUT_S)
                assert refused.value.rcvd is not None
                assert refused.value.rcvd.code == 1012

            # The stalled client reads at last: going_away, then close 1012; it answers.
            assert (await held.text())["type"] == "going_away"
            last = await held.frame()
            assert last.opcode is Opcode.CLOSE
            assert Close.parse(last.data).code == 1012
            await held.close()

            assert await wait_exit(srv) == 0
            with pytest.raises(httpx.ConnectError):
                await alice.request("GET", "/livez")
            with pytest.raises(ConnectionRefusedError):
                await websockets.connect(srv.ws_url, open_timeout=TIMEOUT_S)
        finally:
            for ws in clients:
                await ws.close()
            await alice.aclose()


async def test_a_client_that_never_answers_the_close_holds_the_drain_only_until_the_close_timeout(
    tmp_path: Path,
) -> None:
    env = {"RTC_DRAIN_S": "120", "RTC_WS__CLOSE_TIMEOUT_S": "2"}
    async with running_server(tmp_path, **env) as srv:
        alice = await new_user(srv, "alice")
        try:
            held = await StalledWs.open(srv, alice.token or "")
            assert srv.proc is not None
            loop = asyncio.get_running_loop()
            started = loop.time()
            srv.proc.send_signal(signal.SIGTERM)
            # The node waits the close timeout for the answer, then exits without it.
            assert await wait_exit(srv) == 0
            assert loop.time() - started >= 2
            await held.close()
        finally:
            await alice.aclose()


async def test_a_websocket_still_to_authenticate_does_not_hold_the_drain(
    tmp_path: Path,
) -> None:
    env = {"RTC_DRAIN_S": "120", "RTC_WS__AUTH_TIMEOUT_S": "120"}
    async with (
        running_server(tmp_path, **env) as srv,
        websockets.connect(srv.ws_url) as quiet,  # never sends its auth frame
    ):
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        # Nobody was told to close, so nothing is waited for: the socket gets 1012 and
        # the node exits, long before the auth timeout or the drain period.
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(quiet.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
        assert await wait_exit(srv) == 0


async def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    # Real argon2 cost: a registration takes a noticeable while on the server.
    async with running_server(
        tmp_path, RTC_AUTH__HASH_TIME_COST="20", RTC_AUTH__HASH_MEMORY_KIB="65536"
    ) as srv:
        email = f"{unique('late')}@example.com"
        body = orjson.dumps({"email": email, "password": "correct horse", "display_name": "late"})
        answer = await raw_http(srv, "POST", "/api/v1/auth/register", body)
        # The registration's bytes reached the server's socket before this request's,
        # so once this is answered the node has read the registration and is hashing.
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/livez")).status_code == 200
        assert not answer.done(), "the registration was answered before the SIGTERM"
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)

        status, payload = await asyncio.wait_for(answer, TIMEOUT_S)
        assert status == 201, payload
        assert orjson.loads(payload)["email"] == email
        assert await wait_exit(srv) == 0

    # The answer was not a promise: the user is in the database the node left behind.
    with sqlite3.connect(tmp_path / "realtimechat.db") as db:
        rows = db.execute("SELECT email FROM users WHERE email = ?", (email,)).fetchall()
    assert rows == [(email,)]


# ---- 4. crash safety (C-3, C-5) -----------------------------------------------
async def test_sigkill_loses_no_acknowledged_message_and_keeps_seqs_gapless(
    tmp_path: Path,
) -> None:
    streams, per_stream, kill_after = 8, 30, 80
    async with running_server(tmp_path) as srv:
        alice = await new_user(srv, "alice")
        bob = await new_user(srv, "bob")
        try:
            cid = await team_channel(alice, bob)
            plan = [
                (alice if i % 2 == 0 else bob, unique(f"c{i}"), f"crash {i}")
                for i in range(streams * per_stream)
            ]
            results: dict[str, dict[str, Any] | None] = {}  # cmid -> message, None: in doubt
            enough = asyncio.Event()

            async def stream(part: list[tuple[Api, str, str]]) -> None:
                """Sequential sends, so that some are always in flight when the node dies."""
                for api, cmid, body in part:
                    try:
                        resp = await api.request(
                            "POST", "/api/v1/messages", json=send_body(cid, body, cmid)
                        )
                    except httpx.TransportError:
                        results[cmid] = None  # the node died under it: stored or not, unknown
                        return
                    assert resp.status_code == 201, resp.text
                    results[cmid] = resp.json()
                    if sum(r is not None for r in results.values()) >= kill_after:
                        enough.set()

            senders = [asyncio.create_task(stream(plan[j::streams])) for j in range(streams)]
            await asyncio.wait_for(enough.wait(), TIMEOUT_S)
            assert await srv.signal(signal.SIGKILL) == -signal.SIGKILL
            await asyncio.gather(*senders)
            tokens = (alice.token or "", bob.token or "")
        finally:
            await alice.aclose()
            await bob.aclose()

    acknowledged = {cmid: msg for cmid, msg in results.items() if msg is not None}
    assert len(acknowledged) >= kill_after
    assert len(acknowledged) < len(plan), "every send was answered before the kill"

    async with running_server(tmp_path) as again:
        a2, b2 = Api(again, tokens[0]), Api(again, tokens[1])
        try:
            channel = await a2.ok("GET", f"/api/v1/channels/{cid}", 200)
            events = await a2.events(cid)
            assert_gapless(events, channel["last_seq"])
            stored = messages_by_id(events)
            for msg in acknowledged.values():
                assert msg["id"] in stored, f"acknowledged message {msg['seq']} was lost"
                assert stored[msg["id"]]["seq"] == msg["seq"]
                assert stored[msg["id"]]["data"]["body"] == msg["body"]
            # Every stored message is whole: readable, with the seq of its event.
            for msg_id, ev in stored.items():
                msg = await a2.ok("GET", f"/api/v1/messages/{msg_id}", 200)
                assert msg["seq"] == ev["seq"]

            fresh = await a2.send(cid, "after the crash")
            assert fresh["seq"] == channel["last_seq"] + 1

            # Retrying every send with its client_msg_id has exactly one effect: a send
            # that is stored (acknowledged or committed unseen) answers 200 with it.
            stored_by_cmid = {ev["data"]["client_msg_id"]: ev["data"] for ev in stored.values()}
            assert set(acknowledged) <= set(stored_by_cmid)
            for api, cmid, body in plan:
                who = a2 if api is alice else b2
                resp = await who.request(
                    "POST", "/api/v1/messages", json=send_body(cid, body, cmid)
                )
                if cmid in stored_by_cmid:
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["id"] == stored_by_cmid[cmid]["id"]
                else:
                    assert resp.status_code == 201, resp.text

            final = await a2.events(cid)
            assert_gapless(final)
            bodies = Counter(ev["data"]["body"] for ev in messages_by_id(final).values())
            assert bodies == Counter([body for _, _, body in plan] + ["after the crash"])
        finally:
            await a2.aclose()
            await b2.aclose()
