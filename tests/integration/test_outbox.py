"""The outbox relay on real PostgreSQL and Redis: what the fast path lost is published once.

Events are written as a node writes them (with their outbox rows) but never
published, as when the node dies between commit and publish.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtimechat.bus.redis_streams import RedisStreamsBus
from realtimechat.domain.models import Channel, Event, User
from realtimechat.ids import now_ms
from realtimechat.services.outbox import OutboxRelay
from realtimechat.settings import RedisSettings, Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlTx, SqlUnitOfWork
from tests.postgres import postgres_server
from tests.redis_server import RedisServer, redis_server
from tests.support import ManualClock

FAST = RedisSettings(timeout_s=0.5, block_ms=100, retry_s=0.05)
_channels = itertools.count()


@pytest.fixture(scope="module")
async def pg_db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SqlUnitOfWork]:
    """A node's unit of work for a bus that needs the outbox, publishing nowhere."""
    async with postgres_server() as pg:
        tmp: Path = tmp_path_factory.mktemp("outbox")
        settings = Settings(data_dir=tmp, database_url=pg.url)
        await asyncio.to_thread(upgrade, settings)
        db = Database(settings)
        db.start()
        uow = SqlUnitOfWork(db, outbox=True)
        await uow.write(lambda tx: tx.users.add(User("u1", "u1@example.com", "U", 0), "h"))
        try:
            yield uow
        finally:
            await db.close()


@pytest.fixture(scope="module")
async def redis() -> AsyncIterator[RedisServer]:
    async with redis_server() as server:
        yield server


class Listener:
    """Another node: collects what reaches it over the bus."""

    def __init__(self, url: str) -> None:
        self.bus = RedisStreamsBus(url, FAST, node_id="listener")
        self.got: list[tuple[str, int]] = []
        self.changed = asyncio.Event()
        self.bus.subscribe(self._on_event, lambda _s: None)

    def _on_event(self, ev: Event) -> None:
        self.got.append((ev.channel_id, ev.seq))
        self.changed.set()

    async def wait_for(self, n: int, channel_id: str) -> list[int]:
        async with asyncio.timeout(10):
            while len(seqs := [s for c, s in self.got if c == channel_id]) < n:
                self.changed.clear()
                await self.changed.wait()
        return seqs


@pytest.fixture
async def listener(redis: RedisServer) -> AsyncIterator[Listener]:
    listener = Listener(redis.url)
    await listener.bus.start()
    yield listener
    await listener.bus.close()


@pytest.fixture
async def publisher(redis: RedisServer) -> AsyncIterator[RedisStreamsBus]:
    bus = RedisStreamsBus(redis.url, FAST, read=False)
    await bus.start()
    yield bus
    await bus.close()


async def unpublished_events(uow: SqlUnitOfWork, n: int) -> str:
    """A new channel with n events written with their outbox rows, published nowhere."""
    channel_id = f"c{next(_channels)}"

    def setup(tx: SqlTx) -> None:
        tx.channels.add(Channel(channel_id, None, "public", "x", 0, "e", "u1", 0))

    await uow.write(setup)
    await asyncio.gather(
        *(
            uow.write(lambda tx: tx.events.append(channel_id, "message.created", {}))
            for _ in range(n)
        )
    )
    return channel_id


def due_now() -> int:
    """A relay clock a second ahead: every row written so far is due, even one written in
    the millisecond of the claim (a row is due when strictly older than the cut-off)."""
    return now_ms() + 1000


async def waiting(uow: SqlUnitOfWork) -> int:
    return (await uow.read(lambda tx: tx.outbox.lag(now_ms())))[0]


async def test_the_relay_publishes_what_no_node_did_in_order_and_clears_the_outbox(
    pg_db: SqlUnitOfWork, listener: Listener, publisher: RedisStreamsBus
) -> None:
    channel_id = await unpublished_events(pg_db, 30)
    relay = OutboxRelay(uow=pg_db, publish=publisher.publish_confirmed, delay_ms=0, clock=due_now)
    assert await relay.run_once() == 30
    assert await listener.wait_for(30, channel_id) == list(range(1, 31))
    assert await waiting(pg_db) == 0
    assert await relay.run_once() == 0


async def test_two_relays_share_the_rows_and_publish_each_event_once(
    pg_db: SqlUnitOfWork, listener: Listener, publisher: RedisStreamsBus
) -> None:
    channel_id = await unpublished_events(pg_db, 300)
    relays = [
        OutboxRelay(
            uow=pg_db, publish=publisher.publish_confirmed, delay_ms=0, batch=40, clock=due_now
        )
        for _ in range(2)
    ]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.run_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert sum(r.relayed for r in relays) == 300
    assert all(r.relayed > 0 for r in relays)
    assert sorted(await listener.wait_for(300, channel_id)) == list(range(1, 301))


async def test_a_relay_that_dies_after_claiming_leaves_the_rows_to_another_once_the_claim_lapses(
    pg_db: SqlUnitOfWork, listener: Listener, publisher: RedisStreamsBus
) -> None:
    channel_id = await unpublished_events(pg_db, 10)

    async def dies(events: object) -> None:
        raise ConnectionError("killed between claim and publish")

    clock = ManualClock()
    base = now_ms() + 1 - round(clock() * 1000)  # starts just after the rows were written

    def ms() -> int:
        return base + round(clock() * 1000)

    doomed = OutboxRelay(uow=pg_db, publish=dies, delay_ms=0, claim_ms=2000, clock=ms)
    with pytest.raises(ConnectionError):
        await doomed.run_once()
    survivor = OutboxRelay(uow=pg_db, publish=publisher.publish_confirmed, delay_ms=0, clock=ms)
    assert await survivor.run_once() == 0  # claimed by the dead relay for now
    clock.advance(1.9)
    assert await survivor.run_once() == 0  # still claimed just before the claim lapses
    clock.advance(0.2)
    assert await survivor.run_once() == 10
    assert await listener.wait_for(10, channel_id) == list(range(1, 11))
    assert await waiting(pg_db) == 0
