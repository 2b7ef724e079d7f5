"""ChannelService on the fake unit of work: visibility, membership events, DMs,
invitations on a manual clock, read markers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from realtimechat.bus.memory import MemoryBus
from realtimechat.domain.errors import (
    ChannelAdminRequired,
    Forbidden,
    NotAMember,
    NotFound,
    TooManyInvitations,
)
from realtimechat.domain.models import Event, Team
from realtimechat.services.channels import ChannelService
from realtimechat.settings import LimitSettings
from tests.support.clock import ManualMsClock
from tests.support.fake_uow import FakeUnitOfWork, seed_users


@dataclass
class World:
    uow: FakeUnitOfWork
    published: list[Event]
    clock: ManualMsClock
    channels: ChannelService
    team: Team


@pytest.fixture
async def world() -> World:
    bus = MemoryBus()
    published: list[Event] = []
    bus.subscribe(published.append, lambda _s: None)
    clock = ManualMsClock()
    uow = FakeUnitOfWork(publish=bus.publish, clock=clock)
    seed_users(uow, "ada", "bob", "eve", "zed")
    limits = LimitSettings(team_invitations_max=1, invitation_ttl_s=60)
    channels = ChannelService(uow=uow, limits=limits, clock=clock)
    team = await channels.create_team("ada", "Acme")
    for uid in ("bob", "eve"):
        await channels.add_team_member("ada", team.id, user_id=uid)
    return World(uow, published, clock, channels, team)


async def test_a_private_channel_is_not_found_by_team_members_outside_it(world: World) -> None:
    secret = await world.channels.create_channel("ada", world.team.id, "secret", private=True)
    with pytest.raises(NotFound):
        await world.channels.get_channel("bob", secret.id)
    with pytest.raises(NotFound):
        await world.channels.channel_members("bob", secret.id)
    with pytest.raises(NotFound):
        await world.channels.add_channel_member("bob", secret.id, "bob")
    listed = [v.channel.id for v in await world.channels.team_channels("bob", world.team.id)]
    assert secret.id not in listed
    # Added by its admin, it appears, with the join as an event of the channel.
    await world.channels.add_channel_member("ada", secret.id, "bob")
    assert (await world.channels.get_channel("bob", secret.id)).is_member
    joined = [e for e in world.published if e.type == "member.joined"]
    assert [(e.channel_id, e.seq, e.joined) for e in joined] == [(secret.id, 2, ("bob",))]


async def test_only_admins_add_others_to_a_private_channel(world: World) -> None:
    secret = await world.channels.create_channel("ada", world.team.id, "secret", private=True)
    await world.channels.add_channel_member("ada", secret.id, "bob")
    before = list(world.published)
    with pytest.raises(ChannelAdminRequired):
        await world.channels.add_channel_member("bob", secret.id, "eve")
    assert world.published == before


async def test_a_public_channel_is_visible_and_joining_it_is_one_event(world: World) -> None:
    general = await world.channels.create_channel("ada", world.team.id, "general", private=False)
    view = await world.channels.get_channel("bob", general.id)
    assert not view.is_member
    with pytest.raises(NotAMember):
        await world.channels.mark_read("bob", general.id, 1)
    member, created = await world.channels.add_channel_member("bob", general.id, "bob")
    again, created_again = await world.channels.add_channel_member("bob", general.id, "bob")
    assert (created, created_again) == (True, False)
    assert member.user_id == again.user_id == "bob"
    assert [e.type for e in world.published] == ["channel.created", "member.joined"]


async def test_leaving_publishes_member_left_and_then_the_channel_is_closed(world: World) -> None:
    secret = await world.channels.create_channel("ada", world.team.id, "secret", private=True)
    await world.channels.add_channel_member("ada", secret.id, "bob")
    with pytest.raises(Forbidden):
        await world.channels.remove_channel_member("bob", secret.id, "ada")
    await world.channels.remove_channel_member("bob", secret.id, "bob")
    assert world.published[-1].type == "member.left"
    assert world.published[-1].left == ("bob",)
    with pytest.raises(NotFound):
        await world.channels.get_channel("bob", secret.id)


async def test_a_dm_is_created_once_per_pair_and_only_between_teammates(world: World) -> None:
    view, created = await world.channels.open_dm("ada", "bob")
    same, created_again = await world.channels.open_dm("bob", "ada")
    assert (created, created_again) == (True, False)
    assert same.channel.id == view.channel.id
    assert set(view.member_ids) == {"ada", "bob"}
    with pytest.raises(NotFound):
        await world.channels.open_dm("ada", "zed")  # shares no team
    created_events = [e for e in world.published if e.channel_id == view.channel.id]
    assert [(e.type, set(e.joined)) for e in created_events] == [
        ("channel.created", {"ada", "bob"})
    ]
    with pytest.raises(NotFound):
        await world.channels.get_channel("eve", view.channel.id)


async def test_an_invitation_expires_on_the_clock_and_frees_its_place(world: World) -> None:
    await world.channels.invite_to_team("ada", world.team.id, "zed@example.com")
    with pytest.raises(TooManyInvitations):
        await world.channels.invite_to_team("ada", world.team.id, "other@example.com")
    world.clock.advance(60)  # the moment it expires
    assert await world.channels.list_teams("zed") == []
    await world.channels.invite_to_team("ada", world.team.id, "other@example.com")  # room now
    world.clock.advance(60)
    await world.channels.invite_to_team("ada", world.team.id, "ZED@example.com ")
    world.clock.advance(59.999)
    # The renewed one is still good: listing the teams accepts it.
    assert [t.id for t in await world.channels.list_teams("zed")] == [world.team.id]


async def test_the_read_marker_moves_forward_only_and_stops_at_the_last_seq(world: World) -> None:
    general = await world.channels.create_channel("ada", world.team.id, "general", private=False)
    assert await world.channels.mark_read("ada", general.id, 99) == 1  # capped at last_seq
    assert await world.channels.mark_read("ada", general.id, 0) == 1  # never back
    assert world.published[-1].type == "channel.created"  # a read marker is no event
