"""WebSocket resume: cursors, epochs, the replay limit, private channels, slow consumers.

A test proves "nothing more" by pinging after the resume: the server queues the
replay before it answers the ping, so every frame before the pong is the replay.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.integration.ws_support import (
    Frame,
    before_pong,
    connect_slow_reader,
    events,
    read_until_closed,
    token,
    until,
)
from tests.support import Api, ServerProcess, WsClient, new_user, running_server, team_channel

MISSED = 20
HIGH_LIMITS = {
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
}


async def miss_messages(
    server: ServerProcess, listener: Api, sender: Api, channel_id: str, n: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The listener connects (its cursor is the ready entry), goes away, `n` messages follow."""
    ws = await WsClient.connect(server, token(listener))
    (entry,) = [c for c in ws.ready["channels"] if c["id"] == channel_id]
    await ws.close()
    sent = [await sender.send(channel_id, f"missed {i}") for i in range(n)]
    return entry, sent


def assert_replay(frames: list[Frame], channel_id: str, sent: list[dict[str, Any]]) -> None:
    """Exactly the sent messages, in order, as message.created events and nothing else."""
    assert [f["type"] for f in frames] == ["event"] * len(sent), frames
    assert [(f["channel_id"], f["event"]) for f in frames] == [
        (channel_id, "message.created")
    ] * len(sent)
    assert [f["seq"] for f in frames] == [m["seq"] for m in sent]
    assert [f["data"] for f in frames] == sent


# ---- replay -----------------------------------------------------------------


async def resume_in_auth(
    server: ServerProcess, api: Api, cursors: dict[str, Any]
) -> tuple[WsClient, list[Frame]]:
    ws = await WsClient.connect(server, token(api), cursors=cursors)
    return ws, await before_pong(ws)


async def resume_after_ready(
    server: ServerProcess, api: Api, cursors: dict[str, Any]
) -> tuple[WsClient, list[Frame]]:
    ws = await WsClient.connect(server, token(api))
    await ws.send({"type": "resume", "cursors": cursors})
    return ws, await before_pong(ws)


Resume = Callable[[ServerProcess, Api, dict[str, Any]], Awaitable[tuple[WsClient, list[Frame]]]]
RESUMES = pytest.mark.parametrize(
    "resume", [resume_in_auth, resume_after_ready], ids=["auth-cursors", "resume-frame"]
)


@RESUMES
async def test_resume_replays_exactly_the_missed_events(
    server: ServerProcess, alice: Api, bob: Api, resume: Resume
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    entry, sent = await miss_messages(server, bob, alice, cid, MISSED)
    assert entry["epoch"] == channel["epoch"]
    assert [m["seq"] for m in sent] == list(range(entry["last_seq"] + 1, entry["last_seq"] + 21))

    ws, frames = await resume(
        server, bob, {cid: {"seq": entry["last_seq"], "epoch": entry["epoch"]}}
    )
    assert_replay(frames, cid, sent)
    (now,) = ws.ready["channels"]
    assert now["last_seq"] == sent[-1]["seq"]

    # Live delivery goes on right after the replay, with no gap and no repeat.
    live = await alice.send(cid, "live again")
    assert_replay(await ws.events(1, cid), cid, [live])
    await ws.close()


@RESUMES
async def test_bare_integer_cursor(
    server: ServerProcess, alice: Api, bob: Api, resume: Resume
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    entry, sent = await miss_messages(server, bob, alice, cid, MISSED)
    ws, frames = await resume(server, bob, {cid: entry["last_seq"]})
    assert_replay(frames, cid, sent)
    await ws.close()


async def test_resume_only_the_channels_named_and_from_their_own_cursors(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    one = await team_channel(alice, bob, name="one")
    two = await alice.create_channel(one["team_id"], "two")
    await alice.join(two["id"], bob)
    ws = await WsClient.connect(server, token(bob))
    seqs = {c["id"]: c["last_seq"] for c in ws.ready["channels"]}
    await ws.close()
    sent_one = [await alice.send(one["id"], f"one {i}") for i in range(3)]
    sent_two = [await alice.send(two["id"], f"two {i}") for i in range(4)]

    ws, frames = await resume_in_auth(
        server, bob, {one["id"]: seqs[one["id"]] + 1, two["id"]: seqs[two["id"]]}
    )
    assert_replay(events(frames, one["id"]), one["id"], sent_one[1:])
    assert_replay(events(frames, two["id"]), two["id"], sent_two)
    assert len(frames) == 2 + 4
    await ws.close()


async def test_resume_after_live_delivery_may_resend_but_never_skips(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(bob))
    start = ws.ready["channels"][0]["last_seq"]
    sent = [await alice.send(cid, f"m{i}") for i in range(5)]
    assert_replay(await ws.events(5, cid), cid, sent)

    await ws.send({"type": "resume", "cursors": {cid: start + 2}})
    assert_replay(await before_pong(ws), cid, sent[2:])
    await ws.close()


@RESUMES
async def test_wrong_epoch_answers_resync(
    server: ServerProcess, alice: Api, bob: Api, resume: Resume
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    entry, _ = await miss_messages(server, bob, alice, cid, 3)
    ws, frames = await resume(server, bob, {cid: {"seq": entry["last_seq"], "epoch": "bogus"}})
    # Never a replay from a seq of another history.
    assert frames == [{"type": "resync", "channel_id": cid}]

    live = await alice.send(cid, "after the resync")
    assert_replay(await ws.events(1, cid), cid, [live])
    await ws.close()


async def test_cursor_ahead_of_the_channel_answers_resync(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(bob))
    last = ws.ready["channels"][0]["last_seq"]
    await ws.send(
        {"type": "resume", "cursors": {cid: {"seq": last + 50, "epoch": channel["epoch"]}}}
    )
    assert await before_pong(ws) == [{"type": "resync", "channel_id": cid}]
    await ws.close()


async def test_malformed_cursors_are_errors(server: ServerProcess, alice: Api, bob: Api) -> None:
    channel = await team_channel(alice, bob)
    cid = channel["id"]
    ws = await WsClient.connect(server, token(bob))
    await ws.send({"type": "resume", "cursors": {cid: -1}})
    await ws.send({"type": "resume", "cursors": {cid: {"epoch": channel["epoch"]}}})
    await ws.send({"type": "resume", "cursors": [cid]})
    errs = await before_pong(ws)
    assert [(e["type"], e["code"]) for e in errs] == [("error", "validation_error")] * 3
    assert [e.get("channel_id") for e in errs[:2]] == [cid, cid]
    await ws.close()


# ---- private channels -------------------------------------------------------


@RESUMES
async def test_resume_of_a_private_channel_you_are_not_in_is_not_found(
    server: ServerProcess, alice: Api, bob: Api, carol: Api, resume: Resume
) -> None:
    public = await team_channel(alice, carol)
    private = await alice.create_channel(public["team_id"], "secret", private=True)
    await alice.add_to_team(public["team_id"], bob)
    await alice.join(private["id"], bob)
    secret = [await alice.send(private["id"], f"secret {i}") for i in range(3)]

    ws, frames = await resume(server, carol, {private["id"]: {"seq": 0, "epoch": private["epoch"]}})
    assert private["id"] not in {c["id"] for c in ws.ready["channels"]}
    (err,) = frames
    assert err["type"] == "error"
    assert err["code"] == "not_found"
    assert err["channel_id"] == private["id"]
    assert err["ref"] == ("auth" if resume is resume_in_auth else "resume")
    for m in secret:
        assert m["body"] not in str(frames)

    # Nor does anything of that channel reach carol afterwards.
    await alice.send(private["id"], "still secret")
    await ws.send({"type": "typing", "channel_id": private["id"]})
    (err,) = await before_pong(ws)
    assert (err["code"], err["ref"], err["channel_id"]) == ("not_found", "typing", private["id"])
    marker = await alice.send(public["id"], "public marker")
    frames = await until(ws, lambda f: f["type"] == "event")
    assert [f["data"] for f in frames] == [marker]
    await ws.close()


# ---- the replay limit -------------------------------------------------------


@pytest.fixture(scope="module")
async def limited_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    async with running_server(
        tmp_path_factory.mktemp("limited"), RTC_WS__REPLAY_LIMIT="5", **HIGH_LIMITS
    ) as srv:
        yield srv


@RESUMES
async def test_gap_beyond_the_replay_limit_resyncs_then_rest_pages_fill_it(
    limited_server: ServerProcess, resume: Resume
) -> None:
    alice = await new_user(limited_server, "alice")
    bob = await new_user(limited_server, "bob")
    try:
        channel = await team_channel(alice, bob)
        cid = channel["id"]
        entry, sent = await miss_messages(limited_server, bob, alice, cid, 8)
        cursor = entry["last_seq"]

        ws, frames = await resume(
            limited_server, bob, {cid: {"seq": cursor, "epoch": entry["epoch"]}}
        )
        assert ws.ready["replay_limit"] == 5
        assert frames == [{"type": "resync", "channel_id": cid}]

        # The client pages the events, in small pages, from its cursor.
        paged: list[dict[str, Any]] = []
        after, pages = cursor, 0
        while True:
            page = await bob.ok(
                "GET",
                f"/api/v1/channels/{cid}/events",
                200,
                params={"after_seq": after, "limit": 3},
            )
            pages += 1
            paged.extend(page["events"])
            if not page["has_more"]:
                break
            after = page["events"][-1]["seq"]
        assert pages == 3
        assert [e["seq"] for e in paged] == [m["seq"] for m in sent]
        assert [e["data"] for e in paged] == sent

        # Live delivery continues after the resync point.
        live = await alice.send(cid, "live")
        assert_replay(await ws.events(1, cid), cid, [live])

        # A gap of exactly the limit is still replayed.
        await ws.send({"type": "resume", "cursors": {cid: live["seq"] - 5}})
        assert_replay(await before_pong(ws), cid, [*sent[-4:], live])
        await ws.close()
    finally:
        await alice.aclose()
        await bob.aclose()


# ---- slow consumers ---------------------------------------------------------


@pytest.fixture(scope="module")
async def small_queue_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServerProcess]:
    async with running_server(
        tmp_path_factory.mktemp("smallq"), RTC_WS__SEND_QUEUE="8", **HIGH_LIMITS
    ) as srv:
        yield srv


async def test_slow_consumer_is_closed_1013_and_resumes_without_loss(
    small_queue_server: ServerProcess,
) -> None:
    server = small_queue_server
    alice = await new_user(server, "alice")
    bob = await new_user(server, "bob")
    try:
        channel = await team_channel(alice, bob)
        cid = channel["id"]
        slow = await connect_slow_reader(server, bob)
        (entry,) = slow.ready["channels"]

        # bob reads nothing while alice sends 400 incompressible 16 kB messages: 6.4 MB,
        # more than the kernel's largest socket send buffer (4 MB) can hold for him.
        body = secrets.token_hex(8000)
        sent: list[dict[str, Any]] = []
        for batch in range(40):  # ten at a time keeps it quick
            sent.extend(
                await asyncio.gather(*(alice.send(cid, f"{batch}.{i} {body}") for i in range(10)))
            )
        sent.sort(key=lambda m: m["seq"])
        first = entry["last_seq"] + 1
        assert [m["seq"] for m in sent] == list(range(first, first + 400))

        # What bob gets before the close is a gapless prefix; then 1013.
        frames, code = await read_until_closed(slow)
        assert code == 1013
        got = events(frames, cid)
        assert [f["type"] for f in frames if f["type"] != "heartbeat"] == ["event"] * len(got)
        assert len(got) < len(sent)
        assert_replay(got, cid, sent[: len(got)])

        # Reconnect from the cursor: the rest, exactly once, in order.
        cursor = got[-1]["seq"] if got else entry["last_seq"]
        ws, rest = await resume_in_auth(
            server, bob, {cid: {"seq": cursor, "epoch": entry["epoch"]}}
        )
        assert_replay(rest, cid, sent[len(got) :])
        assert_replay([*got, *rest], cid, sent)
        await ws.close()
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_replay_queued_before_a_removal_stops_at_the_removal(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    """A replay that is still queued when the user is removed must not reach past it.

    bob's sender is held up behind a backlog he does not read (6.4 MB, more than
    the socket buffers take), so his resume is still waiting in his queue when
    alice removes him and writes on.
    """
    flood = await team_channel(alice, bob, name="flood")
    secret = await alice.create_channel(flood["team_id"], "secret", private=True)
    await alice.join(secret["id"], bob)
    slow = await connect_slow_reader(server, bob)
    cursors = {c["id"]: c["last_seq"] for c in slow.ready["channels"]}
    before = await alice.send(secret["id"], "bob may read this")
    watcher = await WsClient.connect(server, token(alice))

    body = secrets.token_hex(8000)
    for batch in range(40):
        await asyncio.gather(*(alice.send(flood["id"], f"{batch}.{i} {body}") for i in range(10)))
    await slow.send({"type": "resume", "cursors": {secret["id"]: cursors[secret["id"]]}})
    # The receive loop handles frames in order: once bob's typing reaches alice,
    # his resume has passed the membership check and its replay is queued.
    await slow.send({"type": "typing", "channel_id": secret["id"]})
    await until(watcher, lambda f: f["type"] == "typing" and f["user_id"] == bob.user_id)

    await alice.ok("DELETE", f"/api/v1/channels/{secret['id']}/members/{bob.user_id}", 204)
    after = await alice.send(secret["id"], "bob must not read this")

    await slow.send({"type": "ping", "id": "end"})
    frames = await until(slow, lambda f: f["type"] == "pong", timeout=20)
    assert len(events(frames, flood["id"])) == 400
    got = events(frames, secret["id"])
    assert "bob must not read this" not in str(got)
    assert after["id"] not in {f["data"].get("id") for f in got}
    # The replay (and any live copy) ends with bob's own member.left.
    assert got[-1]["event"] == "member.left"
    assert got[-1]["data"]["user_id"] == bob.user_id
    assert before["id"] in {f["data"].get("id") for f in got}
    await slow.close()
    await watcher.close()
