"""The WebSocket protocol (v1): auth, ready, live events, send, typing/ping, membership.

Every test talks to a real server over a real socket. Nothing sleeps: a test
waits for frames, and proves that something did *not* arrive by waiting for a
later frame that the server must send after it (a pong, or an event of another
channel published afterwards).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.ws_support import (
    Frame,
    assert_gapless,
    before_pong,
    channel_last_seq,
    dumps,
    events,
    raw_connect,
    read_until_closed,
    send_raw,
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

# ---- auth -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def quick_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A server with a short auth timeout and a fast heartbeat."""
    async with running_server(
        tmp_path_factory.mktemp("quick"),
        RTC_WS__AUTH_TIMEOUT_S="0.5",
        RTC_WS__HEARTBEAT_MS="200",
    ) as srv:
        yield srv


async def test_no_auth_frame_in_time_closes_4408(quick_server: ServerProcess) -> None:
    ws = await raw_connect(quick_server)
    # Well under the default 10 s: the configured 0.5 s applies.
    frames, code = await read_until_closed(ws, timeout=5)
    assert code == 4408
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["code"] == "auth_timeout"


async def test_bad_token_gets_error_and_4401(server: ServerProcess) -> None:
    ws = await raw_connect(server)
    await ws.send({"type": "auth", "token": "not-a-jwt"})
    frames, code = await read_until_closed(ws)
    assert code == 4401
    assert len(frames) == 1
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == "unauthorized"


async def test_token_of_another_server_is_refused(
    quick_server: ServerProcess, server: ServerProcess
) -> None:
    """A well-formed token signed with another node's secret is not accepted."""
    stranger = await new_user(quick_server, "stranger")
    try:
        ws = await raw_connect(server)
        await ws.send({"type": "auth", "token": token(stranger)})
        frames, code = await read_until_closed(ws)
        assert code == 4401
        assert [f["type"] for f in frames] == ["error"]
    finally:
        await stranger.aclose()


@pytest.mark.parametrize(
    "first",
    [
        dumps({"type": "ping", "id": 1}),
        dumps({"type": "resume", "cursors": {}}),
        dumps({"type": "auth"}),
        "{not json",
    ],
    ids=["ping", "resume", "auth-without-token", "malformed"],
)
async def test_first_frame_not_auth_closes_4401(server: ServerProcess, first: str) -> None:
    ws = await raw_connect(server)
    await send_raw(ws, first)
    frames, code = await read_until_closed(ws)
    assert code == 4401
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["code"] == "auth_required"


async def test_auth_again_after_ready_renews_the_session(server: ServerProcess, alice: Api) -> None:
    # A second auth frame re-authenticates (issue 13; tests/integration/test_ws_hardening.py).
    ws = await WsClient.connect(server, token(alice))
    await ws.send({"type": "auth", "token": token(alice)})
    (ok,) = await before_pong(ws)
    assert ok == {"type": "auth_ok", "expires_at": ws.ready["expires_at"]}
    await ws.close()


# ---- ready and heartbeat ----------------------------------------------------


async def test_ready_lists_the_users_channels(server: ServerProcess, alice: Api, bob: Api) -> None:
    shared = await team_channel(alice, bob)
    team_id = shared["team_id"]
    secret = await alice.create_channel(team_id, "secret", private=True)
    for i in range(3):
        await alice.send(shared["id"], f"m{i}")

    ws = await WsClient.connect(server, token(bob))
    ready = ws.ready
    assert ready["user_id"] == bob.user_id
    assert isinstance(ready["session_id"], str)
    assert ready["session_id"]
    assert ready["heartbeat_ms"] == 20_000
    by_id = {c["id"]: c for c in ready["channels"]}
    assert set(by_id) == {shared["id"]}  # not alice's private channel
    # created, bob joined, three messages
    assert by_id[shared["id"]]["last_seq"] == 5 == await channel_last_seq(bob, shared["id"])
    assert by_id[shared["id"]]["epoch"] == shared["epoch"]
    assert isinstance(shared["epoch"], str)
    assert shared["epoch"]

    ws_alice = await WsClient.connect(server, token(alice))
    alice_channels = {c["id"]: c for c in ws_alice.ready["channels"]}
    assert set(alice_channels) == {shared["id"], secret["id"]}
    assert alice_channels[secret["id"]]["epoch"] == secret["epoch"]
    assert alice_channels[secret["id"]]["epoch"] != shared["epoch"]
    assert alice_channels[secret["id"]]["last_seq"] == 1
    await ws.close()
    await ws_alice.close()


async def test_heartbeats_arrive_at_the_announced_interval(quick_server: ServerProcess) -> None:
    user = await new_user(quick_server, "hb")
    try:
        ws = await WsClient.connect(quick_server, token(user))
        assert ws.ready["heartbeat_ms"] == 200
        for _ in range(2):
            frame = await ws.recv(timeout=5)
            assert frame == {"type": "heartbeat"}
        await ws.close()
    finally:
        await user.aclose()


# ---- live events ------------------------------------------------------------


async def test_message_events_carry_the_rest_message(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(bob))
    start = ws.ready["channels"][0]["last_seq"]

    sent = await alice.send(cid, "first draft")
    edited = await alice.ok(
        "PUT",
        f"/api/v1/messages/{sent['id']}",
        200,
        json={"body": "final words"},
        headers={"If-Match": f'"{sent["version"]}"'},
    )
    deleted = await alice.ok(
        "DELETE", f"/api/v1/messages/{sent['id']}", 200, headers={"If-Match": '"2"'}
    )
    frames = await ws.events(3, cid)

    assert [f["event"] for f in frames] == ["message.created", "message.updated", "message.deleted"]
    assert [f["seq"] for f in frames] == [start + 1, start + 2, start + 3]
    assert frames[0]["data"] == sent
    assert frames[1]["data"] == edited
    assert edited["body"] == "final words"
    assert edited["version"] == 2
    assert edited["edited_at"] is not None
    assert frames[2]["data"] == deleted
    assert deleted["deleted_at"] is not None
    assert deleted["body"] == ""
    assert all(f["channel_id"] == cid for f in frames)

    # The REST events page carries the same events; once the message is deleted
    # every stored event of it holds the tombstone, so its text is gone for good.
    page = await bob.events(cid, after_seq=start)
    assert [(e["seq"], e["event"], e["created_at"]) for e in page] == [
        (f["seq"], f["event"], f["created_at"]) for f in frames
    ]
    assert [e["data"] for e in page] == [deleted] * 3
    assert {"type": "event", **page[2]} == frames[2]
    await ws.close()


async def test_member_events(server: ServerProcess, alice: Api, bob: Api, carol: Api) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    await alice.add_to_team(channel["team_id"], carol)
    ws = await WsClient.connect(server, token(bob))

    await alice.join(cid, carol)
    await carol.ok("DELETE", f"/api/v1/channels/{cid}/members/{carol.user_id}", 204)
    joined, left = await ws.events(2, cid)

    assert joined["event"] == "member.joined"
    assert joined["data"]["user_id"] == carol.user_id
    assert joined["data"]["added_by"] == alice.user_id
    assert left["event"] == "member.left"
    assert left["data"]["user_id"] == carol.user_id
    assert left["seq"] == joined["seq"] + 1
    await ws.close()


# ---- send over the socket ---------------------------------------------------


async def ws_send(ws: WsClient, channel_id: str, body: str, client_msg_id: str) -> list[Frame]:
    """Send, and every frame up to the answer (send_ok or an error for this id)."""
    await ws.send(
        {"type": "send", "channel_id": channel_id, "client_msg_id": client_msg_id, "body": body}
    )
    return await until(
        ws,
        lambda f: f["type"] in ("send_ok", "error") and f.get("client_msg_id") == client_msg_id,
    )


async def test_send_is_idempotent_by_client_msg_id(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(alice))
    listener = await WsClient.connect(server, token(bob))
    cmid = unique("c")

    frames = await ws_send(ws, cid, "hello over ws", cmid)
    ok = frames[-1]
    assert ok["type"] == "send_ok"
    assert ok["client_msg_id"] == cmid
    assert ok["created"] is True
    msg = ok["message"]
    assert msg["body"] == "hello over ws"
    assert msg["sender_id"] == alice.user_id
    assert msg["client_msg_id"] == cmid
    assert msg["channel_id"] == cid
    assert msg == await alice.ok("GET", f"/api/v1/messages/{msg['id']}", 200)
    # The sender's own session gets the event too (before the send_ok).
    assert [f["data"] for f in events(frames, cid)] == [msg]

    # A retry: the same message, not a second one.
    again = await ws_send(ws, cid, "hello over ws", cmid)
    assert again[-1]["type"] == "send_ok"
    assert again[-1]["created"] is False
    assert again[-1]["message"] == msg
    assert events(again) == []

    # The same id with another body is refused.
    reused = await ws_send(ws, cid, "something else", cmid)
    err = reused[-1]
    assert err["type"] == "error"
    assert err["code"] == "idempotency_key_reused"
    assert err["ref"] == "send"
    assert err["channel_id"] == cid

    # A REST retry of the WS-sent id: 200 with the same message.
    resp = await alice.request(
        "POST",
        "/api/v1/messages",
        json={"channel_id": cid, "body": "hello over ws", "client_msg_id": cmid},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == msg

    # The listener saw exactly one message: the next event it gets is the later one.
    later = await alice.send(cid, "later")
    got = await listener.events(2, cid)
    assert [f["data"]["id"] for f in got] == [msg["id"], later["id"]]
    assert [f["seq"] for f in got] == [msg["seq"], msg["seq"] + 1]
    await ws.close()
    await listener.close()


async def test_send_to_a_channel_you_cannot_see_is_not_found(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    public = await team_channel(alice, bob)
    private = await alice.create_channel(public["team_id"], "hidden", private=True)
    outside = await alice.create_channel(public["team_id"], "open-but-not-joined")
    ws = await WsClient.connect(server, token(bob))

    cmid = unique("c")
    err = (await ws_send(ws, private["id"], "let me in", cmid))[-1]
    assert err["type"] == "error"
    assert err["code"] == "not_found"
    assert err["ref"] == "send"
    assert err["client_msg_id"] == cmid
    assert err["channel_id"] == private["id"]

    err = (await ws_send(ws, outside["id"], "hi", unique("c")))[-1]
    assert err["type"] == "error"
    assert err["code"] == "not_a_member"

    err = (await ws_send(ws, public["id"], "   ", unique("c")))[-1]
    assert err["type"] == "error"
    assert err["code"] == "validation_error"

    # Sends run concurrently with the receive loop: wait for the answer itself.
    await ws.send({"type": "send", "channel_id": public["id"], "body": "no id"})
    (err,) = await until(ws, lambda f: f["type"] == "error")
    assert err["type"] == "error"
    assert err["code"] == "validation_error"
    assert err["ref"] == "send"

    assert all(e["event"] != "message.created" for e in await alice.events(private["id"]))
    await ws.close()


# ---- typing, ping, unknown and bad frames ------------------------------------------


async def test_typing_reaches_the_other_members_only(
    server: ServerProcess, alice: Api, bob: Api, carol: Api
) -> None:
    channel = await team_channel(alice, bob, carol)
    cid = channel["id"]
    other = await alice.create_channel(channel["team_id"], "elsewhere")
    ws_alice = await WsClient.connect(server, token(alice))
    ws_alice_2 = await WsClient.connect(server, token(alice))
    ws_bob = await WsClient.connect(server, token(bob))
    ws_carol = await WsClient.connect(server, token(carol))

    await ws_alice.send({"type": "typing", "channel_id": cid})
    expected = {"type": "typing", "channel_id": cid, "user_id": alice.user_id}
    for ws in (ws_bob, ws_carol):
        frames = await until(ws, lambda f: f["type"] == "typing")
        assert frames == [expected]  # no seq: typing is not a channel event
    # Not echoed to the sender, nor to the sender's other session.
    assert await before_pong(ws_alice) == []
    assert await before_pong(ws_alice_2) == []

    # Typing into a channel you are not in is refused and reaches nobody.
    await ws_bob.send({"type": "typing", "channel_id": other["id"]})
    (err,) = await before_pong(ws_bob)
    assert err["code"] == "not_found"
    assert err["ref"] == "typing"
    assert await before_pong(ws_alice) == []
    for ws in (ws_alice, ws_alice_2, ws_bob, ws_carol):
        await ws.close()


async def test_ping_unknown_and_malformed_frames(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(bob))
    last = ws.ready["channels"][0]["last_seq"]

    await ws.send({"type": "ping", "id": 42})
    assert await until(ws, lambda f: True) == [{"type": "pong", "id": 42}]

    # `ack` is gone from the protocol (nothing read what it stored): a type like any other.
    await ws.send({"type": "ack", "channel_id": cid, "seq": last})
    (err,) = await before_pong(ws)
    assert (err["code"], err["ref"], err["channel_id"]) == ("unknown_frame_type", "ack", cid)

    await ws.send({"type": "teleport", "channel_id": cid})
    (err,) = await before_pong(ws)
    assert err["type"] == "error"
    assert err["code"] == "unknown_frame_type"
    assert err["ref"] == "teleport"
    assert isinstance(err["message"], str)

    for bad in ("{this is not json", "[1, 2, 3]", '{"no_type": true}', '"just a string"'):
        await send_raw(ws, bad)
        (err,) = await before_pong(ws)
        assert err["type"] == "error"
        assert err["code"] == "malformed_frame"

    # Still usable: live events keep coming, the session can send.
    sent = await alice.send(cid, "still there?")
    (frame,) = await ws.events(1, cid)
    assert frame["data"] == sent
    ok = (await ws_send(ws, cid, "yes", unique("c")))[-1]
    assert ok["type"] == "send_ok"
    await ws.close()


# ---- membership changes while connected -------------------------------------


async def test_added_member_receives_without_reconnecting(
    server: ServerProcess, alice: Api, carol: Api
) -> None:
    channel = await team_channel(alice)
    cid = channel["id"]
    await alice.add_to_team(channel["team_id"], carol)
    await alice.send(cid, "before carol")
    ws = await WsClient.connect(server, token(carol))
    assert ws.ready["channels"] == []

    await alice.join(cid, carol)
    sent = await alice.send(cid, "welcome carol")
    frames = await until(ws, lambda f: f["type"] == "event" and f["event"] == "message.created")

    assert [f["type"] for f in frames] == ["event", "event"]
    joined, created = frames
    assert joined["event"] == "member.joined"
    assert joined["channel_id"] == cid
    assert joined["data"]["user_id"] == carol.user_id
    # The join event tells the new member what it needs to follow the channel.
    assert joined["data"]["channel"]["id"] == cid
    assert joined["data"]["channel"]["epoch"] == channel["epoch"]
    assert joined["data"]["channel"]["last_seq"] == joined["seq"]
    assert created["data"] == sent
    assert created["seq"] == joined["seq"] + 1

    # The new channel is fully usable: typing and send work on it.
    await ws.send({"type": "typing", "channel_id": cid})
    assert await before_pong(ws) == []
    ok = (await ws_send(ws, cid, "thanks", unique("c")))[-1]
    assert ok["type"] == "send_ok"
    await ws.close()


async def test_removed_member_stops_receiving(server: ServerProcess, alice: Api, bob: Api) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    second = await alice.create_channel(channel["team_id"], "second")
    await alice.join(second["id"], bob)
    ws = await WsClient.connect(server, token(bob))
    assert {c["id"] for c in ws.ready["channels"]} == {cid, second["id"]}

    await alice.ok("DELETE", f"/api/v1/channels/{cid}/members/{bob.user_id}", 204)
    (left,) = await ws.events(1, cid)
    assert left["event"] == "member.left"
    assert left["data"]["user_id"] == bob.user_id
    assert left["data"]["removed_by"] == alice.user_id

    hidden = await alice.send(cid, "after bob left")
    await alice.ok(
        "PUT",
        f"/api/v1/messages/{hidden['id']}",
        200,
        json={"body": "edited after bob left"},
        headers={"If-Match": '"1"'},
    )
    ws_alice = await WsClient.connect(server, token(alice))
    await ws_alice.send({"type": "typing", "channel_id": cid})
    assert await before_pong(ws_alice) == []
    marker = await alice.send(second["id"], "to the second channel")

    frames = await until(ws, lambda f: f["type"] == "event")
    assert frames == [
        {
            "type": "event",
            "channel_id": second["id"],
            "seq": marker["seq"],
            "event": "message.created",
            "created_at": frames[-1]["created_at"],
            "data": marker,
        }
    ]
    # Nor can the removed member replay the channel or type into it.
    await ws.send({"type": "resume", "cursors": {cid: 0}})
    await ws.send({"type": "typing", "channel_id": cid})
    errs = await before_pong(ws)
    assert [(e["type"], e["code"]) for e in errs] == [("error", "not_found")] * 2
    await ws.close()
    await ws_alice.close()


async def test_joins_racing_the_connect_come_after_ready_and_none_is_missed(
    server: ServerProcess, alice: Api, carol: Api
) -> None:
    """Channels carol is added to while her sessions connect: ready is still the
    first frame, and each channel is either in ready or announced by member.joined."""
    team = await alice.create_team("race")
    await alice.add_to_team(team["id"], carol)
    channels = [await alice.create_channel(team["id"], f"c{i}") for i in range(30)]
    wanted = {c["id"] for c in channels}

    async def connect() -> tuple[Frame, WsClient]:
        ws = await raw_connect(server)
        await ws.send({"type": "auth", "token": token(carol)})
        first = await ws.recv()
        return first, ws

    async def join_all() -> None:
        await asyncio.gather(*(alice.join(c["id"], carol) for c in channels))

    results, _ = await asyncio.gather(asyncio.gather(*(connect() for _ in range(30))), join_all())
    for first, ws in results:
        assert first["type"] == "ready", first
        known = {c["id"] for c in first["channels"]}
        # Every join was published before this ping was sent.
        for frame in await before_pong(ws):
            if frame["type"] == "event" and frame["event"] == "member.joined":
                assert frame["data"]["user_id"] == carol.user_id
                known.add(frame["channel_id"])
        assert known == wanted
        await ws.close()


# ---- ordering under concurrency ---------------------------------------------


async def test_concurrent_senders_gapless_in_order_at_every_listener(
    server: ServerProcess, alice: Api, bob: Api, carol: Api
) -> None:
    per_sender = 100
    channel = await team_channel(alice, bob, carol)
    cid = channel["id"]
    listeners = [await WsClient.connect(server, token(u)) for u in (alice, bob, carol)]
    start = listeners[0].ready["channels"][0]["last_seq"]
    ws_sender = await WsClient.connect(server, token(alice))

    async def rest_sender(api: Api) -> list[str]:
        ids = []
        for i in range(per_sender):
            ids.append((await api.send(cid, f"{api.user_id} {i}"))["id"])
        return ids

    async def ws_sender_all() -> list[str]:
        cmids = [unique("c") for _ in range(per_sender)]
        for i, cmid in enumerate(cmids):  # pipelined: up to max_inflight_sends at once
            await ws_sender.send(
                {"type": "send", "channel_id": cid, "client_msg_id": cmid, "body": f"ws {i}"}
            )
        oks: dict[str, Any] = {}
        while len(oks) < per_sender:
            frame = await ws_sender.recv()
            assert frame["type"] != "error", frame
            if frame["type"] == "send_ok":
                oks[frame["client_msg_id"]] = frame["message"]["id"]
        return [oks[c] for c in cmids]

    async def listen(ws: WsClient) -> list[Frame]:
        return await ws.events(3 * per_sender, cid, timeout=20)

    listening = [asyncio.create_task(listen(ws)) for ws in listeners]
    sent = await asyncio.gather(ws_sender_all(), rest_sender(bob), rest_sender(carol))
    received = await asyncio.gather(*listening)

    all_ids = {i for ids in sent for i in ids}
    assert len(all_ids) == 3 * per_sender
    reference = [f["data"]["id"] for f in received[0]]
    for frames in received:
        assert_gapless(frames, cid, start + 1, 3 * per_sender)
        ids = [f["data"]["id"] for f in frames]
        assert set(ids) == all_ids
        assert ids == reference  # every listener sees the one channel order
        for f in frames:
            assert f["data"]["seq"] == f["seq"]
    # Each sender's own messages keep their send order within the channel.
    position = {mid: i for i, mid in enumerate(reference)}
    for ids in sent[1:]:
        assert [position[i] for i in ids] == sorted(position[i] for i in ids)
    # Nothing beyond them is pending for any listener.
    for ws in listeners:
        assert events(await before_pong(ws), cid) == []
        await ws.close()
    await ws_sender.close()
