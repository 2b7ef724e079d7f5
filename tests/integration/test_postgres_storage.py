"""The database runner and the send path on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from realtimechat.bus.memory import MemoryBus
from realtimechat.domain.models import Channel, Event, User
from realtimechat.services.channels import ChannelService
from realtimechat.services.events import append_event
from realtimechat.services.messages import MessageService
from realtimechat.settings import Settings
from realtimechat.storage import repositories as repo
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
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

    def setup(conn: Connection) -> None:
        repo.insert_user(conn, user, "hash")
        repo.insert_channel(conn, channel)

    await pg_db.write(setup)

    def one(conn: Connection) -> Event:
        return append_event(conn, "c1", "message.created", {})

    events = await asyncio.gather(*(pg_db.write(one) for _ in range(200)))
    assert sorted(e.seq for e in events) == list(range(1, 201))
    stored = await pg_db.read(lambda c: repo.events_after(c, "c1", 0, 500))
    assert [e.seq for e in stored] == list(range(1, 201))


async def test_idempotent_send_on_postgres(pg_db: Database) -> None:
    def setup(conn: Connection) -> None:
        repo.insert_user(conn, User("u1", "u1@example.com", "U", 0), "hash")

    await pg_db.write(setup)
    bus = MemoryBus()
    published: list[Event] = []
    bus.subscribe(published.append, lambda _s: None)
    channels = ChannelService(db=pg_db, bus=bus)
    settings = Settings()
    messages = MessageService(db=pg_db, bus=bus, limits=settings.limits, notify=settings.notify)
    team = await channels.create_team("u1", "Acme")
    channel = await channels.create_channel("u1", team.id, "general", private=False)
    first, created = await messages.send("u1", channel.id, "hello", "m-1")
    again, created_again = await messages.send("u1", channel.id, "hello", "m-1")
    assert created
    assert not created_again
    assert again == first
    assert first.seq == 2
    assert [e.seq for e in published] == [1, 2]
