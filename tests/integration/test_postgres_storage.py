"""The database runner and the send path on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtimechat.bus.memory import MemoryBus
from realtimechat.domain.models import Channel, Event, User
from realtimechat.services.channels import ChannelService
from realtimechat.services.messages import MessageService
from realtimechat.settings import Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlTx, SqlUnitOfWork
from tests.postgres import postgres_server


@pytest.fixture
async def pg_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with postgres_server() as pg:
        settings = Settings(data_dir=tmp_path, database_url=pg.url)
        await asyncio.to_thread(upgrade, settings)
        await asyncio.to_thread(upgrade, settings)  # migrating twice changes nothing
        db = Database(settings)
        db.start()
        try:
            yield db
        finally:
            await db.close()


async def test_migrations_and_gapless_seqs_under_concurrent_writes(pg_db: Database) -> None:
    user = User("u1", "u1@example.com", "U", 0)
    channel = Channel("c1", None, "public", "general", 0, "e1", "u1", 0)

    uow = SqlUnitOfWork(pg_db)

    def setup(tx: SqlTx) -> None:
        tx.users.add(user, "hash")
        tx.channels.add(channel)

    await uow.write(setup)

    def one(tx: SqlTx) -> Event:
        return tx.events.append("c1", "message.created", {})

    events = await asyncio.gather(*(uow.write(one) for _ in range(200)))
    assert sorted(e.seq for e in events) == list(range(1, 201))
    stored = await uow.read(lambda tx: tx.events.after("c1", 0, 500))
    assert [e.seq for e in stored] == list(range(1, 201))


async def test_idempotent_send_on_postgres(pg_db: Database) -> None:
    bus = MemoryBus()
    published: list[Event] = []
    bus.subscribe(published.append, lambda _s: None)
    uow = SqlUnitOfWork(pg_db, publish=bus.publish)
    await uow.write(lambda tx: tx.users.add(User("u1", "u1@example.com", "U", 0), "hash"))
    channels = ChannelService(uow=uow)
    settings = Settings()
    messages = MessageService(uow=uow, limits=settings.limits, notify=settings.notify)
    team = await channels.create_team("u1", "Acme")
    channel = await channels.create_channel("u1", team.id, "general", private=False)
    first, created = await messages.send("u1", channel.id, "hello", "m-1")
    again, created_again = await messages.send("u1", channel.id, "hello", "m-1")
    assert created
    assert not created_again
    assert again == first
    assert first.seq == 2
    assert [e.seq for e in published] == [1, 2]
