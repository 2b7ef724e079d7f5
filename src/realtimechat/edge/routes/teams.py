"""Teams, channels, channel members, DMs and read markers."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from realtimechat.domain.errors import ValidationFailed
from realtimechat.edge.auth import CurrentUser
from realtimechat.edge.deps import Channels
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import (
    AddMemberIn,
    ChannelIn,
    ChannelPatch,
    Id,
    ReadIn,
    TeamIn,
    UserRef,
)

router = APIRouter(prefix="/api/v1")


@router.post("/teams", status_code=201, tags=["teams"])
async def create_team(body: TeamIn, user: CurrentUser, channels: Channels) -> Response:
    team = await channels.create_team(user.user_id, body.name)
    return json(team.to_json(), 201)


@router.get("/teams", tags=["teams"])
async def list_teams(user: CurrentUser, channels: Channels) -> Response:
    teams = await channels.list_teams(user.user_id)
    return json({"teams": [t.to_json() for t in teams]})


@router.get("/teams/{team_id}", tags=["teams"])
async def get_team(team_id: Id, user: CurrentUser, channels: Channels) -> Response:
    return json((await channels.get_team(user.user_id, team_id)).to_json())


@router.post(
    "/teams/{team_id}/members",
    status_code=201,
    tags=["teams"],
    responses={
        200: {"description": "Already a member (by user_id)"},
        202: {"description": "Invited by e-mail: the same answer whether or not it has an account"},
    },
)
async def add_team_member(
    team_id: Id, body: AddMemberIn, user: CurrentUser, channels: Channels
) -> Response:
    """Add a user by `user_id` (201, or 200 if already in), or invite an `email` (202).

    An invitation answers the same whether or not the address has an account; it
    becomes a membership when that account next lists its teams or connects.
    """
    if body.user_id:
        member, created = await channels.add_team_member(
            user.user_id, team_id, user_id=body.user_id
        )
        return json(member.to_json(), 201 if created else 200)
    if body.email:
        invitation = await channels.invite_to_team(user.user_id, team_id, body.email)
        return json(invitation.to_json(), 202)
    raise ValidationFailed("give user_id or email", field="user_id")


@router.get("/teams/{team_id}/members", tags=["teams"])
async def team_members(team_id: Id, user: CurrentUser, channels: Channels) -> Response:
    members = await channels.team_members(user.user_id, team_id)
    return json({"members": [m.to_json() for m in members]})


@router.post("/teams/{team_id}/channels", status_code=201, tags=["channels"])
async def create_channel(
    team_id: Id, body: ChannelIn, user: CurrentUser, channels: Channels
) -> Response:
    channel = await channels.create_channel(user.user_id, team_id, body.name, body.private)
    return json(channel.to_json(), 201)


@router.get("/teams/{team_id}/channels", tags=["channels"])
async def team_channels(team_id: Id, user: CurrentUser, channels: Channels) -> Response:
    views = await channels.team_channels(user.user_id, team_id)
    return json({"channels": [v.to_json() for v in views]})


@router.get("/channels", tags=["channels"])
async def my_channels(user: CurrentUser, channels: Channels) -> Response:
    """Every channel (DMs included) the caller is a member of, with unread counts."""
    views = await channels.my_channels(user.user_id)
    return json({"channels": [v.to_json() for v in views]})


@router.get("/channels/{channel_id}", tags=["channels"])
async def get_channel(channel_id: Id, user: CurrentUser, channels: Channels) -> Response:
    return json((await channels.get_channel(user.user_id, channel_id)).to_json())


@router.patch("/channels/{channel_id}", tags=["channels"])
async def rename_channel(
    channel_id: Id, body: ChannelPatch, user: CurrentUser, channels: Channels
) -> Response:
    channel = await channels.rename_channel(user.user_id, channel_id, body.name)
    return json(channel.to_json())


@router.get("/channels/{channel_id}/members", tags=["channels"])
async def channel_members(channel_id: Id, user: CurrentUser, channels: Channels) -> Response:
    members = await channels.channel_members(user.user_id, channel_id)
    return json({"members": [m.to_json() for m in members]})


@router.post("/channels/{channel_id}/members", status_code=201, tags=["channels"])
async def add_channel_member(
    channel_id: Id, body: UserRef, user: CurrentUser, channels: Channels
) -> Response:
    member, created = await channels.add_channel_member(user.user_id, channel_id, body.user_id)
    return json(member.to_json(), 201 if created else 200)


@router.delete("/channels/{channel_id}/members/{member_id}", status_code=204, tags=["channels"])
async def remove_channel_member(
    channel_id: Id, member_id: Id, user: CurrentUser, channels: Channels
) -> Response:
    await channels.remove_channel_member(user.user_id, channel_id, member_id)
    return Response(status_code=204)


@router.post("/dms", status_code=201, tags=["channels"])
async def open_dm(body: UserRef, user: CurrentUser, channels: Channels) -> Response:
    view, created = await channels.open_dm(user.user_id, body.user_id)
    return json(view.to_json(), 201 if created else 200)


@router.post("/channels/{channel_id}/read", tags=["channels"])
async def mark_read(
    channel_id: Id, body: ReadIn, user: CurrentUser, channels: Channels
) -> Response:
    read_seq = await channels.mark_read(user.user_id, channel_id, body.seq)
    return json({"channel_id": channel_id, "read_seq": read_seq})
