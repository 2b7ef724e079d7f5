"""A replay across a removal and a re-add shows neither what was said while away nor stops."""

from __future__ import annotations

from tests.integration.ws_support import before_pong, token
from tests.support import Api, ServerProcess, WsClient, team_channel


async def test_replay_skips_what_was_said_while_removed_and_goes_on_after_re_add(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    ch = (await team_channel(alice, bob, name="ops"))["id"]
    cursor = (await bob.events(ch))[-1]["seq"]

    await alice.ok("DELETE", f"/api/v1/channels/{ch}/members/{bob.user_id}", 204)
    secret = await alice.send(ch, "said while bob was away")
    await alice.join(ch, bob)
    tail = [await alice.send(ch, "said after bob came back")]

    for via_auth in (True, False):
        ws = await WsClient.connect(server, token(bob), cursors={ch: cursor} if via_auth else None)
        if not via_auth:
            await ws.send({"type": "resume", "cursors": {ch: cursor}})
        replayed = [f for f in await before_pong(ws) if f["type"] == "event"]
        kinds = [(f["event"], f["data"].get("user_id") or f["data"].get("body")) for f in replayed]
        assert kinds == [
            ("member.left", bob.user_id),
            ("member.joined", bob.user_id),
            *(("message.created", m["body"]) for m in tail),
        ]
        assert all(f["seq"] != secret["seq"] for f in replayed)
        assert replayed[-1]["seq"] == tail[-1]["seq"]
        tail.append(await alice.send(ch, "live again"))
        (frame,) = await ws.events(1, ch)
        assert frame["seq"] == tail[-1]["seq"]
        await ws.close()
