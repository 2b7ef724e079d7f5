"""MessageService on the fake unit of work: idempotent send, gapless seqs, events only
after commit, private channels invisible, versioned edits, scrubbing deletes."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from realtimechat.bus.memory import MemoryBus
from realtimechat.domain.errors import (
    Forbidden,
    IdempotencyMismatch,
    MessageDeleted,
    NotFound,
    PreconditionFailed,
)
from realtimechat.domain.models import Channel, Event
from realtimechat.services.channels import ChannelService
from realtimechat.services.messages import MessageService
from realtimechat.settings import Settings
from tests.support.clock import ManualMsClock
from tests.support.fake_uow import FakeUnitOfWork, seed_users


@dataclass
class World:
    uow: FakeUnitOfWork
    published: list[Event]
    channels: ChannelService
    messages: MessageService
    general: Channel
    secret: Channel


@pytest.fixture
async def world() -> World:
    bus = MemoryBus()
    published: list[Event] = []
    bus.subscribe(published.append, lambda _s: None)
    clock = ManualMsClock()
    uow = FakeUnitOfWork(publish=bus.publish, clock=clock)
    seed_users(uow, "ada", "bob", "eve")
    settings = Settings()
    channels = ChannelService(uow=uow, clock=clock)
    messages = MessageService(uow=uow, limits=settings.limits, notify=settings.notify, clock=clock)
    team = await channels.create_team("ada", "Acme")
    for uid in ("bob", "eve"):
        await channels.add_team_member("ada", team.id, user_id=uid)
    general = await channels.create_channel("ada", team.id, "general", private=False)
    await channels.add_channel_member("bob", general.id, "bob")
    secret = await channels.create_channel("ada", team.id, "secret", private=True)
    published.clear()
    return World(uow, published, channels, messages, general, secret)


async def test_the_same_client_msg_id_answers_the_same_message_once(world: World) -> None:
    first, created = await world.messages.send("ada", world.general.id, "hello", "m-1")
    again, created_again = await world.messages.send("ada", world.general.id, "hello", "m-1")
    assert (created, created_again) == (True, False)
    assert again == first
    assert [(e.type, e.seq) for e in world.published] == [("message.created", first.seq)]


async def test_a_reused_client_msg_id_with_another_body_is_refused(world: World) -> None:
    await world.messages.send("ada", world.general.id, "hello", "m-1")
    commits = world.uow.commits
    with pytest.raises(IdempotencyMismatch):
        await world.messages.send("ada", world.general.id, "something else", "m-1")
    assert world.uow.commits == commits
    assert len(world.published) == 1


async def test_seqs_are_gapless_across_sends_edits_and_failures(world: World) -> None:
    channel_id = world.general.id
    start = world.general.last_seq + 2  # the channel took seq 1, bob joining seq 2
    sent = [await world.messages.send("ada", channel_id, f"m{i}", f"c{i}") for i in range(3)]
    with pytest.raises(IdempotencyMismatch):  # fails inside its transaction: no seq used
        await world.messages.send("ada", channel_id, "other", "c0")
    msg = sent[0][0]
    await world.messages.edit("ada", msg.id, "m0 edited", if_match=msg.version)
    last, _ = await world.messages.send("ada", channel_id, "m3", "c3")
    assert [m.seq for m, _ in sent] + [last.seq] == [start, start + 1, start + 2, start + 4]
    events, has_more = await world.messages.events("ada", channel_id, 0, 100)
    assert [e.seq for e in events] == list(range(1, last.seq + 1))
    assert not has_more


async def test_events_are_published_after_commit_and_never_for_a_lost_race(world: World) -> None:
    world.uow.lose_next_race()  # another try of this very send commits first
    msg, created = await world.messages.send("ada", world.general.id, "hello", "m-1")
    assert not created  # the retry found the rival's message
    assert world.uow.rollbacks == 1
    assert [(e.type, e.seq) for e in world.published] == [("message.created", msg.seq)]
    stored, _ = await world.messages.history("ada", world.general.id, None, 10)
    assert stored == [msg]


async def test_a_private_channel_is_not_found_by_outsiders(world: World) -> None:
    await world.messages.send("ada", world.secret.id, "psst", "m-1")
    with pytest.raises(NotFound):
        await world.messages.history("bob", world.secret.id, None, 10)
    with pytest.raises(NotFound):
        await world.messages.events("bob", world.secret.id, 0, 10)
    with pytest.raises(NotFound):
        await world.messages.send("bob", world.secret.id, "let me in", "m-2")
    assert len(world.published) == 1


async def test_an_edit_needs_the_current_version_and_the_author(world: World) -> None:
    msg, _ = await world.messages.send("ada", world.general.id, "hello", "m-1")
    with pytest.raises(Forbidden):
        await world.messages.edit("bob", msg.id, "hijacked", if_match=1)
    edited = await world.messages.edit("ada", msg.id, "hello again", if_match=1)
    assert (edited.body, edited.version) == ("hello again", 2)
    with pytest.raises(PreconditionFailed) as stale:
        await world.messages.edit("ada", msg.id, "from an old copy", if_match=1)
    assert stale.value.extra == {"current_version": 2}
    assert [e.type for e in world.published] == ["message.created", "message.updated"]


async def test_delete_scrubs_the_body_from_the_message_and_every_event(world: World) -> None:
    msg, _ = await world.messages.send("ada", world.general.id, "my secret", "m-1")
    await world.messages.edit("ada", msg.id, "my edited secret", if_match=1)
    with pytest.raises(Forbidden):  # neither author nor channel admin
        await world.messages.delete("bob", msg.id, if_match=2)
    gone = await world.messages.delete("ada", msg.id, if_match=2)
    assert (gone.body, gone.deleted_at is not None, gone.version) == ("", True, 3)
    again = await world.messages.delete("ada", msg.id, if_match=3)  # twice: no change
    assert again == gone
    events, _ = await world.messages.events("ada", world.general.id, 0, 100)
    assert all(b"secret" not in e.data for e in events)
    assert [e.type for e in world.published][-1] == "message.deleted"
    assert orjson.loads(world.published[-1].data)["body"] == ""
    with pytest.raises(MessageDeleted):
        await world.messages.edit("ada", msg.id, "back", if_match=3)


async def test_reads_and_refused_writes_publish_nothing(world: World) -> None:
    await world.messages.history("ada", world.general.id, None, 10)
    with pytest.raises(NotFound):
        await world.messages.get("eve", "no-such-message")
    with pytest.raises(NotFound):
        await world.messages.edit("ada", "no-such-message", "x", if_match=1)
    assert world.published == []
