"""The SQL unit of work on SQLite and PostgreSQL: a raise rolls back and publishes
nothing; events are published after commit, in commit order; outbox rows are written
exactly when the bus needs them, on the send path's combined statement too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from realtimechat.domain.models import Channel, Event, Message, User
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlUnitOfWork
from tests.postgres import postgres_server


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with contextlib.AsyncExitStack() as stack:
        settings = Settings(data_dir=tmp_path)
        if request.param == "postgres":
            pg = await stack.enter_async_context(postgres_server())
            settings = Settings(data_dir=tmp_path, database_url=pg.url)
        await asyncio.to_thread(upgrade, settings)
        database = Database(settings)
        database.start()
        stack.push_async_callback(database.close)
        setup = SqlUnitOfWork(database)

        def rows(tx: Tx) -> None:
            tx.users.add(User("u1", "u1@example.com", "U", 0), "h")
            tx.channels.add(Channel("c1", None, "public", "x", 0, "e", "u1", 0))
            tx.channels.add_member("c1", "u1", "admin", 0)

        await setup.write(rows)
        yield database


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


def message(seq: int, client_msg_id: str) -> tuple[Message, Event]:
    msg = Message(f"m-{client_msg_id}", "c1", seq, "u1", client_msg_id, "hi", [], 1, 1, None, None)
    return msg, Event("c1", seq, "message.created", b"{}", 1)


def send(client_msg_id: str) -> Callable[[Tx], int]:
    def work(tx: Tx) -> int:
        slot = tx.channels.next_seq_for_new_send("c1", "u1", client_msg_id, 10)
        assert slot is not None
        msg, ev = message(slot.seq, client_msg_id)
        tx.messages.add(msg, "hash", ev, [])
        return slot.seq

    return work


async def outbox_rows(uow: UnitOfWork) -> int:
    return (await uow.read(lambda tx: tx.outbox.lag(0)))[0]


async def test_a_raise_rolls_back_everything_and_publishes_nothing(db: Database) -> None:
    published = Published()
    uow = SqlUnitOfWork(db, publish=published, outbox=True)

    def doomed(tx: Tx) -> None:
        tx.events.append("c1", "test.event", {"n": 1})
        tx.users.add(User("u2", "u2@example.com", "V", 0), "h")
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await uow.write(doomed)
    assert published.events == []
    assert await uow.read(lambda tx: tx.users.get("u2")) is None
    assert await uow.read(lambda tx: tx.events.after("c1", 0, 10)) == []
    assert await uow.read(lambda tx: tx.channels.last_seqs(["c1"])) == {"c1": 0}
    assert await outbox_rows(uow) == 0


async def test_events_are_published_after_commit_in_commit_order(db: Database) -> None:
    published = Published()
    uow = SqlUnitOfWork(db, publish=published)

    def two(tx: Tx) -> None:
        tx.events.append("c1", "test.a", {})
        tx.events.append("c1", "test.b", {})

    results = await asyncio.gather(uow.write(two), uow.write(send("x")), uow.write(two))
    assert results[1] == 3
    assert [e.seq for e in published.events] == [1, 2, 3, 4, 5]
    assert [e.type for e in published.events][2] == "message.created"
    stored = await uow.read(lambda tx: tx.events.after("c1", 0, 10))
    assert [(e.seq, e.type) for e in stored] == [(e.seq, e.type) for e in published.events]


@pytest.mark.parametrize("needs_outbox", [False, True])
async def test_outbox_rows_are_written_only_when_the_bus_needs_them(
    db: Database, needs_outbox: bool
) -> None:
    uow = SqlUnitOfWork(db, publish=Published(), outbox=needs_outbox)
    await uow.write(lambda tx: tx.events.append("c1", "test.event", {}))
    await uow.write(send("y"))  # on PostgreSQL, one combined statement
    expected = 2 if needs_outbox else 0
    assert await outbox_rows(uow) == expected
    if needs_outbox:
        claimed = await uow.write(
            lambda tx: tx.outbox.claim(older_than=2**62, now=1, until=2, limit=10)
        )
        assert [e.seq for e in claimed] == [1, 2]


async def test_appending_in_a_read_transaction_is_refused(db: Database) -> None:
    uow = SqlUnitOfWork(db)
    with pytest.raises(RuntimeError, match="read transaction"):
        await uow.read(lambda tx: tx.events.append("c1", "test.event", {}))
