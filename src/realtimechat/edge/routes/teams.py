"""Teams, channels, channel members, DMs and read markers."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from realtimechat.domain.errors import ValidationFailed
from realtimechat.edge.auth import AppDeps, CurrentUser
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
async def create_team(body: TeamIn, user: CurrentUser, deps: AppDeps) -> Response:
    team = await deps.channels.create_team(user.user_id, body.name)
    return json(team.to_json(), 201)


@router.get("/teams", tags=["teams"])
async def list_teams(user: CurrentUser, deps: AppDeps) -> Response:
    teams = await deps.channels.list_teams(user.user_id)
    return json({"teams": [t.to_json() for t in teams]})


@router.get("/teams/{team_id}", tags=["teams"])
async def get_team(team_id: Id, user: CurrentUser, deps: AppDeps) -> Response:
    return json((await deps.channels.get_team(user.user_id, team_id)).to_json())


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
    team_id: Id, body: AddMemberIn, user: CurrentUser, deps: AppDeps
) -> Response:
    """Add a user by `user_id` (201, or 200 if already in), or invite an `email` (202).

    An invitation answers the same whether or not the address has an account; it
    becomes a membership when that account next lists its teams or connects.
    """
    if body.user_id:
        member, created = await deps.channels.add_team_member(
            user.user_id, team_id, user_id=body.user_id
        )
        return json(member.to_json(), 201 if created else 200)
    if body.email:
        invitation = await deps.channels.invite_to_team(user.user_id, team_id, body.email)
        return json(invitation.to_json(), 202)
    raise ValidationFailed("give user_id or email", field="user_id")


@router.get("/teams/{team_id}/members", tags=["teams"])
async def team_members(team_id: Id, user: CurrentUser, deps: AppDeps) -> Response:
    members = await deps.channels.team_members(user.user_id, team_id)
    return json({"members": [m.to_json() for m in members]})


@router.post("/teams/{team_id}/channels", status_code=201, tags=["channels"])
async def create_channel(
    team_id: Id, body: ChannelIn, user: CurrentUser, deps: AppDeps
) -> Response:
    channel = await deps.channels.create_channel(user.user_id, team_id, body.name, body.private)
    return json(channel.to_json(), 201)


@router.get("/teams/{team_id}/channels", tags=["channels"])
async def team_channels(team_id: Id, user: CurrentUser, deps: AppDeps) -> Response:
    views = await deps.channels.team_channels(user.user_id, team_id)
    return json({"channels": [v.to_json() for v in views]})


@router.get("/channels", tags=["channels"])
async def my_channels(user: CurrentUser, deps: AppDeps) -> Response:
    """Every channel (DMs included) the caller is a member of, with unread counts."""
    views = await deps.channels.my_channels(user.user_id)
    return json({"channels": [v.to_json() for v in views]})


@router.get("/channels/{channel_id}", tags=["channels"])
async def get_channel(channel_id: Id, user: CurrentUser, deps: AppDeps) -> Response:
    return json((await deps.channels.get_channel(user.user_id, channel_id)).to_json())


@router.patch("/channels/{channel_id}", tags=["channels"])
async def rename_channel(
    channel_id: Id, body: ChannelPatch, user: CurrentUser, deps: AppDeps
) -> Response:
    channel = await deps.channels.rename_channel(user.user_id, channel_id, body.name)
    return json(channel.to_json())


@router.get("/channels/{channel_id}/members", tags=["channels"])
async def channel_members(channel_id: Id, user: CurrentUser, deps: AppDeps) -> Response:
    members = await deps.channels.channel_members(user.user_id, channel_id)
    return json({"members": [m.to_json() for m in members]})


@router.post("/channels/{channel_id}/members", status_code=201, tags=["channels"])
async def add_channel_member(
    channel_id: Id, body: UserRef, user: CurrentUser, deps: AppDeps
) -> Response:
    member, created = await deps.channels.add_channel_member(user.user_id, channel_id, body.user_id)
    return json(member.to_json(), 201 if created else 200)


@router.delete("/channels/{channel_id}/members/{member_id}", status_code=204, tags=["channels"])
async def remove_channel_member(
    channel_id: Id, member_id: Id, user: CurrentUser, deps: AppDeps
) -> Response:
    await deps.channels.remove_channel_member(user.user_id, channel_id, member_id)
    return Response(status_code=204)


@router.post("/dms", status_code=201, tags=["channels"])
async def open_dm(body: UserRef, user: CurrentUser, deps: AppDeps) -> Response:
    view, created = await deps.channels.open_dm(user.user_id, body.user_id)
    return json(view.to_json(), 201 if created else 200)


@router.post("/channels/{channel_id}/read", tags=["channels"])
async def mark_read(channel_id: Id, body: ReadIn, user: CurrentUser, deps: AppDeps) -> Response:
    read_seq = await deps.channels.mark_read(user.user_id, channel_id, body.seq)
    return json({"channel_id": channel_id, "read_seq": read_seq})
