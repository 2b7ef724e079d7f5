"""The first minutes of a new user: register, team, channel, chat, resume."""

from __future__ import annotations

from tests.support import Api, ServerProcess, WsClient


async def test_chat_over_rest_and_websocket(server: ServerProcess, alice: Api, bob: Api) -> None:
    team = await alice.create_team("acme")
    await alice.add_to_team(team["id"], bob)
    channel = await alice.create_channel(team["id"], "general")
    await alice.join(channel["id"], bob)

    ws = await WsClient.connect(server, bob.token or "")
    assert channel["id"] in {c["id"] for c in ws.ready["channels"]}
    sent = await alice.send(channel["id"], "hello bob")
    (frame,) = await ws.events(1, channel["id"])
    assert frame["event"] == "message.created"
    assert frame["data"]["id"] == sent["id"]
    assert frame["seq"] == sent["seq"]
    await ws.close()
