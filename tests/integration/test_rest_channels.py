"""REST contract: teams, team members, channels, visibility, membership, DMs, read markers."""

from __future__ import annotations

from typing import Any

from tests.integration.rest_support import (
    assert_problem,
    assert_timestamp,
    missing_id,
    team_with,
)
from tests.support import Api, ServerProcess, new_user, unique


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


async def channel_list(api: Api) -> dict[str, dict[str, Any]]:
    return by_id((await api.ok("GET", "/api/v1/channels", 200))["channels"])


async def event_types(api: Api, channel_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["data"]) for e in await api.events(channel_id)]


# ---- teams -----------------------------------------------------------------
async def test_create_and_list_teams(alice: Api, bob: Api) -> None:
    name = unique("acme")
    resp = await alice.request("POST", "/api/v1/teams", json={"name": name})
    assert resp.status_code == 201, resp.text
    team = resp.json()
    assert team["name"] == name
    assert team["created_by"] == alice.user_id
    assert team["role"] == "owner"
    assert len(team["id"]) == 36
    assert_timestamp(team["created_at"])

    alices = (await alice.ok("GET", "/api/v1/teams", 200))["teams"]
    assert [t["id"] for t in alices] == [team["id"]]
    assert (await bob.ok("GET", "/api/v1/teams", 200))["teams"] == []
    assert (await alice.ok("GET", f"/api/v1/teams/{team['id']}", 200))["name"] == name
    assert_problem(await bob.request("GET", f"/api/v1/teams/{team['id']}"), 404, "not_found")
    assert_problem(
        await alice.request("POST", "/api/v1/teams", json={"name": "  "}), 422, "validation_error"
    )


async def test_add_team_member_by_user_id_and_by_email(alice: Api, bob: Api, carol: Api) -> None:
    team_id = (await alice.create_team("t"))["id"]
    path = f"/api/v1/teams/{team_id}/members"

    first = await alice.request("POST", path, json={"user_id": bob.user_id})
    assert first.status_code == 201, first.text
    assert first.json()["user_id"] == bob.user_id
    assert first.json()["role"] == "member"
    again = await alice.request("POST", path, json={"user_id": bob.user_id})
    assert again.status_code == 200, again.text
    assert again.json()["user_id"] == bob.user_id

    # By e-mail it is an invitation (tests/integration/test_invitations.py), taken up
    # when Carol next lists her teams.
    by_mail = await alice.request("POST", path, json={"email": carol.email.upper()})
    assert by_mail.status_code == 202, by_mail.text
    assert by_mail.json() == {"invited": True, "email": carol.email}
    assert [t["id"] for t in (await carol.ok("GET", "/api/v1/teams", 200))["teams"]] == [team_id]

    members = (await bob.ok("GET", path, 200))["members"]
    assert {m["user_id"]: m["role"] for m in members} == {
        alice.user_id: "owner",
        bob.user_id: "member",
        carol.user_id: "member",
    }
    assert [t["id"] for t in (await bob.ok("GET", "/api/v1/teams", 200))["teams"]] == [team_id]

    assert_problem(
        await alice.request("POST", path, json={"user_id": missing_id()}), 404, "not_found"
    )
    unknown = await alice.request("POST", path, json={"email": "nobody@example.com"})
    assert unknown.status_code == 202, unknown.text
    assert_problem(await alice.request("POST", path, json={}), 422, "validation_error")


async def test_only_team_admins_add_members(
    server: ServerProcess, alice: Api, bob: Api, carol: Api
) -> None:
    team_id = await team_with(alice, bob)
    path = f"/api/v1/teams/{team_id}/members"
    assert_problem(
        await bob.request("POST", path, json={"user_id": carol.user_id}), 403, "forbidden"
    )
    # An outsider does not even learn that the team exists.
    assert_problem(
        await carol.request("POST", path, json={"user_id": carol.user_id}), 404, "not_found"
    )
    members = (await alice.ok("GET", path, 200))["members"]
    assert carol.user_id not in {m["user_id"] for m in members}


# ---- channels and visibility -------------------------------------------------
async def test_create_channel_shape(alice: Api) -> None:
    team_id = await team_with(alice)
    resp = await alice.request(
        "POST", f"/api/v1/teams/{team_id}/channels", json={"name": "general", "private": False}
    )
    assert resp.status_code == 201, resp.text
    channel = resp.json()
    assert {"id", "team_id", "name", "kind", "last_seq", "epoch", "created_at"} <= set(channel)
    assert channel["team_id"] == team_id
    assert channel["name"] == "general"
    assert channel["kind"] == "public"
    assert channel["last_seq"] == 1  # the channel.created event
    assert isinstance(channel["epoch"], str)
    assert channel["epoch"]
    private = await alice.create_channel(team_id, "secret", private=True)
    assert private["kind"] == "private"
    assert private["epoch"] != channel["epoch"]
    (created,) = await alice.events(channel["id"])
    assert created["seq"] == 1
    assert created["event"] == "channel.created"
    assert created["data"]["channel"]["id"] == channel["id"]


async def test_private_channel_is_invisible_to_non_members(
    alice: Api, bob: Api, carol: Api
) -> None:
    team_id = await team_with(alice, bob, carol)
    public = await alice.create_channel(team_id, "general")
    private = await alice.create_channel(team_id, "secret", private=True)
    await alice.join(private["id"], bob)
    sent = await alice.send(private["id"], "for members only")

    def listed(api_channels: dict[str, Any]) -> set[str]:
        return {c["id"] for c in api_channels["channels"]}

    path = f"/api/v1/teams/{team_id}/channels"
    assert listed(await carol.ok("GET", path, 200)) == {public["id"]}
    assert listed(await bob.ok("GET", path, 200)) == {public["id"], private["id"]}
    assert listed(await alice.ok("GET", path, 200)) == {public["id"], private["id"]}
    carols_view = by_id((await carol.ok("GET", path, 200))["channels"])[public["id"]]
    assert carols_view["is_member"] is False

    cid = private["id"]
    nowhere = missing_id()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/v1/channels/{cid}", {}),
        ("GET", f"/api/v1/channels/{cid}/messages", {}),
        ("GET", f"/api/v1/channels/{cid}/events", {}),
        ("GET", f"/api/v1/channels/{cid}/members", {}),
        (
            "POST",
            "/api/v1/messages",
            {"json": {"channel_id": cid, "body": "hi", "client_msg_id": unique()}},
        ),
        ("PATCH", f"/api/v1/channels/{cid}", {"json": {"name": "mine"}}),
        ("POST", f"/api/v1/channels/{cid}/members", {"json": {"user_id": carol.user_id}}),
        ("POST", f"/api/v1/channels/{cid}/read", {"json": {"seq": 1}}),
        ("GET", f"/api/v1/messages/{sent['id']}", {}),
    ]
    for method, url, kw in calls:
        hidden = assert_problem(await carol.request(method, url, **kw), 404, "not_found")
        # Indistinguishable from a channel that does not exist.
        absent = await carol.request(method, url.replace(cid, nowhere), **kw)
        if "/messages/" not in url:
            assert absent.json() == hidden, (method, url)
    # The private channel was not changed by any of that.
    after = await alice.ok("GET", f"/api/v1/channels/{cid}", 200)
    assert after["name"] == "secret"
    assert after["last_seq"] == sent["seq"]
    members = (await bob.ok("GET", f"/api/v1/channels/{cid}/members", 200))["members"]
    assert {m["user_id"] for m in members} == {alice.user_id, bob.user_id}


async def test_public_non_member_reads_but_cannot_post(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice, bob)
    channel = await alice.create_channel(team_id, "general")
    await alice.send(channel["id"], "hello")

    view = await bob.ok("GET", f"/api/v1/channels/{channel['id']}", 200)
    assert view["is_member"] is False
    history = await bob.ok("GET", f"/api/v1/channels/{channel['id']}/messages", 200)
    assert [m["body"] for m in history["messages"]] == ["hello"]

    resp = await bob.request(
        "POST",
        "/api/v1/messages",
        json={"channel_id": channel["id"], "body": "let me in", "client_msg_id": unique()},
    )
    assert_problem(resp, 403, "not_a_member")
    assert (await alice.ok("GET", f"/api/v1/channels/{channel['id']}", 200))["last_seq"] == 2


async def test_join_and_leave_are_events(alice: Api, bob: Api, carol: Api) -> None:
    team_id = await team_with(alice, bob, carol)
    channel = await alice.create_channel(team_id, "general")
    cid = channel["id"]
    members_path = f"/api/v1/channels/{cid}/members"

    joined = await bob.request("POST", members_path, json={"user_id": bob.user_id})
    assert joined.status_code == 201, joined.text
    assert joined.json()["user_id"] == bob.user_id
    again = await bob.request("POST", members_path, json={"user_id": bob.user_id})
    assert again.status_code == 200, again.text
    members = (await alice.ok("GET", members_path, 200))["members"]
    assert {m["user_id"]: m["role"] for m in members} == {
        alice.user_id: "admin",
        bob.user_id: "member",
    }
    await bob.send(cid, "I'm in")

    # A plain member cannot remove someone else.
    assert_problem(await bob.request("DELETE", f"{members_path}/{alice.user_id}"), 403, "forbidden")
    left = await bob.request("DELETE", f"{members_path}/{bob.user_id}")
    assert left.status_code == 204, left.text
    assert_problem(
        await bob.request(
            "POST",
            "/api/v1/messages",
            json={"channel_id": cid, "body": "still here?", "client_msg_id": unique()},
        ),
        403,
        "not_a_member",
    )
    assert_problem(
        await bob.request("DELETE", f"{members_path}/{bob.user_id}"), 403, "not_a_member"
    )

    types = await event_types(alice, cid)
    assert [t for t, _ in types] == [
        "channel.created",
        "member.joined",
        "message.created",
        "member.left",
    ]
    assert types[1][1]["user_id"] == bob.user_id
    assert types[3][1]["user_id"] == bob.user_id
    # The repeated join added no second event.
    assert (await alice.ok("GET", f"/api/v1/channels/{cid}", 200))["last_seq"] == 4

    # The channel admin adds and removes others.
    await alice.join(cid, carol)
    removed = await alice.request("DELETE", f"{members_path}/{carol.user_id}")
    assert removed.status_code == 204, removed.text
    last_two = (await event_types(alice, cid))[-2:]
    assert [(t, d["user_id"]) for t, d in last_two] == [
        ("member.joined", carol.user_id),
        ("member.left", carol.user_id),
    ]


async def test_only_admins_add_others_to_a_private_channel(
    server: ServerProcess, alice: Api, bob: Api, carol: Api
) -> None:
    dave = await new_user(server, "dave")
    try:
        team_id = await team_with(alice, bob, carol, dave)
        # Bob creates it, so he is its admin; Alice is a plain member of it, but owns the team.
        private = await bob.create_channel(team_id, "secret", private=True)
        path = f"/api/v1/channels/{private['id']}/members"
        await bob.join(private["id"], alice)
        await bob.join(private["id"], carol)
        before = await bob.ok("GET", f"/api/v1/channels/{private['id']}", 200)

        # Carol sees the channel (so 403, not 404) but may not bring anyone in.
        refused = await carol.request("POST", path, json={"user_id": dave.user_id})
        assert_problem(refused, 403, "channel_admin_required")
        assert_problem(
            await carol.request("POST", path, json={"user_id": missing_id()}),
            403,
            "channel_admin_required",
        )
        after = await bob.ok("GET", f"/api/v1/channels/{private['id']}", 200)
        assert after["last_seq"] == before["last_seq"]
        members = (await carol.ok("GET", path, 200))["members"]
        assert dave.user_id not in {m["user_id"] for m in members}
        # Re-adding herself is no change, so no refusal either.
        assert (
            await carol.request("POST", path, json={"user_id": carol.user_id})
        ).status_code == 200

        # The team's owner may, though only a member of the channel.
        await alice.ok("POST", path, 201, json={"user_id": dave.user_id})
        # A public channel stays open: any member adds any team member.
        public = await bob.create_channel(team_id, "open")
        await bob.join(public["id"], carol)
        await carol.ok(
            "POST", f"/api/v1/channels/{public['id']}/members", 201, json={"user_id": dave.user_id}
        )
    finally:
        await dave.aclose()


async def test_rename_is_an_event(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice, bob)
    channel = await alice.create_channel(team_id, "general")
    await alice.join(channel["id"], bob)
    path = f"/api/v1/channels/{channel['id']}"

    assert_problem(await bob.request("PATCH", path, json={"name": "bobs"}), 403, "forbidden")
    renamed = await alice.ok("PATCH", path, 200, json={"name": "random"})
    assert renamed["name"] == "random"
    assert renamed["id"] == channel["id"]
    assert (await bob.ok("GET", path, 200))["name"] == "random"
    events = await alice.events(channel["id"])
    assert events[-1]["event"] == "channel.renamed"
    assert events[-1]["data"]["channel"]["name"] == "random"
    assert events[-1]["seq"] == renamed["last_seq"]
    assert_problem(await alice.request("PATCH", path, json={"name": ""}), 422, "validation_error")


# ---- direct messages ---------------------------------------------------------
async def test_dm_is_one_channel_per_pair(alice: Api, bob: Api, carol: Api) -> None:
    await team_with(alice, bob, carol)
    first = await alice.request("POST", "/api/v1/dms", json={"user_id": bob.user_id})
    assert first.status_code == 201, first.text
    dm = first.json()
    assert dm["kind"] == "dm"
    assert sorted(dm["member_ids"]) == sorted([alice.user_id, bob.user_id])

    again = await alice.request("POST", "/api/v1/dms", json={"user_id": bob.user_id})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == dm["id"]
    reverse = await bob.request("POST", "/api/v1/dms", json={"user_id": alice.user_id})
    assert reverse.status_code == 200, reverse.text
    assert reverse.json()["id"] == dm["id"]

    sent = await alice.send(dm["id"], "psst")
    history = await bob.ok("GET", f"/api/v1/channels/{dm['id']}/messages", 200)
    assert [m["id"] for m in history["messages"]] == [sent["id"]]

    # Carol shares the team but not the conversation.
    cid = dm["id"]
    for method, url, kw in [
        ("GET", f"/api/v1/channels/{cid}", {}),
        ("GET", f"/api/v1/channels/{cid}/messages", {}),
        ("GET", f"/api/v1/channels/{cid}/events", {}),
        ("GET", f"/api/v1/channels/{cid}/members", {}),
        ("GET", f"/api/v1/messages/{sent['id']}", {}),
        (
            "POST",
            "/api/v1/messages",
            {"json": {"channel_id": cid, "body": "x", "client_msg_id": unique()}},
        ),
        ("POST", f"/api/v1/channels/{cid}/members", {"json": {"user_id": carol.user_id}}),
    ]:
        assert_problem(await carol.request(method, url, **kw), 404, "not_found")
    assert cid not in await channel_list(carol)
    # Nobody joins a DM.
    assert_problem(
        await alice.request(
            "POST", f"/api/v1/channels/{cid}/members", json={"user_id": carol.user_id}
        ),
        403,
        "forbidden",
    )
    other = await carol.request("POST", "/api/v1/dms", json={"user_id": alice.user_id})
    assert other.status_code == 201, other.text
    assert other.json()["id"] != cid


async def test_dm_needs_a_shared_team(server: ServerProcess, alice: Api, bob: Api) -> None:
    assert_problem(
        await alice.request("POST", "/api/v1/dms", json={"user_id": bob.user_id}), 404, "not_found"
    )
    assert_problem(
        await alice.request("POST", "/api/v1/dms", json={"user_id": missing_id()}),
        404,
        "not_found",
    )
    assert_problem(
        await alice.request("POST", "/api/v1/dms", json={"user_id": alice.user_id}),
        422,
        "validation_error",
    )
    await team_with(alice, bob)
    resp = await bob.request("POST", "/api/v1/dms", json={"user_id": alice.user_id})
    assert resp.status_code == 201, resp.text


# ---- my channels, unread counts, read markers -------------------------------
async def test_my_channels_with_unread_counts(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice, bob)
    general = await alice.create_channel(team_id, "general")
    await alice.create_channel(team_id, "not-joined-by-bob")
    await alice.join(general["id"], bob)
    dm = await alice.ok("POST", "/api/v1/dms", 201, json={"user_id": bob.user_id})

    for i in range(3):
        await alice.send(general["id"], f"m{i}")
    await alice.send(dm["id"], "hi")
    await bob.send(general["id"], "bob's own")

    bobs = await channel_list(bob)
    assert set(bobs) == {general["id"], dm["id"]}
    assert bobs[general["id"]]["unread_count"] == 3  # his own message does not count
    assert bobs[dm["id"]]["unread_count"] == 1
    assert bobs[general["id"]]["read_seq"] == 0
    assert bobs[general["id"]]["last_seq"] == 6  # created, joined, four messages
    alices = await channel_list(alice)
    assert len(alices) == 3
    assert alices[general["id"]]["unread_count"] == 1
    assert alices[dm["id"]]["unread_count"] == 0


async def test_read_marker_moves_forward_only(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice, bob)
    channel = await alice.create_channel(team_id, "general")
    cid = channel["id"]
    await alice.join(cid, bob)
    sent = [await alice.send(cid, f"m{i}") for i in range(4)]
    mine = await bob.send(cid, "mine")
    path = f"/api/v1/channels/{cid}/read"

    async def unread() -> tuple[int, int]:
        view = (await channel_list(bob))[cid]
        return view["read_seq"], view["unread_count"]

    assert await unread() == (0, 4)
    marked = await bob.ok("POST", path, 200, json={"seq": sent[1]["seq"]})
    assert marked == {"channel_id": cid, "read_seq": sent[1]["seq"]}
    assert await unread() == (sent[1]["seq"], 2)

    back = await bob.ok("POST", path, 200, json={"seq": sent[0]["seq"]})
    assert back["read_seq"] == sent[1]["seq"]
    assert await unread() == (sent[1]["seq"], 2)
    view = await bob.ok("GET", f"/api/v1/channels/{cid}", 200)
    assert (view["read_seq"], view["unread_count"]) == (sent[1]["seq"], 2)

    # Reading past the end is capped at the channel's last seq.
    capped = await bob.ok("POST", path, 200, json={"seq": 10_000})
    assert capped["read_seq"] == mine["seq"]
    assert await unread() == (mine["seq"], 0)
    await alice.send(cid, "one more")
    assert await unread() == (mine["seq"], 1)

    assert_problem(await bob.request("POST", path, json={"seq": -1}), 422, "validation_error")
    assert_problem(await bob.request("POST", path, json={}), 422, "validation_error")


async def test_read_marker_needs_membership(server: ServerProcess, alice: Api) -> None:
    outsider = await new_user(server, "dave")
    try:
        team_id = await team_with(alice, outsider)
        channel = await alice.create_channel(team_id, "general")
        resp = await outsider.request(
            "POST", f"/api/v1/channels/{channel['id']}/read", json={"seq": 1}
        )
        assert_problem(resp, 403, "not_a_member")
    finally:
        await outsider.aclose()
