"""An event read back from the database routes like the one first published."""

from __future__ import annotations

from pathlib import Path

from realtimechat.bus.memory import MemoryBus
from realtimechat.domain.models import Event, User
from realtimechat.services.channels import ChannelService
from realtimechat.settings import Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlTx, SqlUnitOfWork


async def test_membership_changes_are_derived_again_from_stored_events(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    db = Database(settings)
    db.start()
    try:
        bus = MemoryBus()
        published: list[Event] = []
        bus.subscribe(published.append, lambda _s: None)
        uow = SqlUnitOfWork(db, publish=bus.publish)

        def users(tx: SqlTx) -> None:
            for uid in ("u1", "u2"):
                tx.users.add(User(uid, f"{uid}@example.com", uid, 0), "h")

        await uow.write(users)
        channels = ChannelService(uow=uow)
        team = await channels.create_team("u1", "Acme")
        await channels.add_team_member("u1", team.id, user_id="u2")
        channel = await channels.create_channel("u1", team.id, "general", private=False)
        await channels.add_channel_member("u1", channel.id, "u2")
        await channels.remove_channel_member("u1", channel.id, "u2")
        await channels.rename_channel("u1", channel.id, "renamed")
        await channels.open_dm("u1", "u2")

        assert {e.type for e in published} >= {
            "channel.created",
            "member.joined",
            "member.left",
            "channel.renamed",
        }
        assert any(e.joined for e in published)
        assert any(e.left for e in published)
        for ev in published:
            assert Event.stored(ev.channel_id, ev.seq, ev.type, ev.data, ev.created_at) == ev
    finally:
        await db.close()
