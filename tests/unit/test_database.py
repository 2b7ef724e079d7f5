"""The SQLite group-commit runner on a real database file.

Jobs that queue up while the writer is busy share one transaction, each in its
own SAVEPOINT. These tests hold the writer thread inside a job (a `Gate`) so
that what queues up behind it, and so what shares a commit, is decided by the
test and not by timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from realtimechat.domain.errors import AlreadyExists, Overloaded, Unavailable
from realtimechat.domain.models import Channel, Team, User
from realtimechat.ids import new_epoch, new_id, now_ms
from realtimechat.settings import DatabaseSettings, Settings
from realtimechat.storage.database import Database
from realtimechat.storage.events import Appended
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.tables import channels, events, users
from realtimechat.storage.uow import SqlTx

T = TypeVar("T")
WAIT_S = 10  # an upper bound for a thread to reach a point, never a pause


def make_settings(tmp_path: Path, **db: Any) -> Settings:
    return Settings(data_dir=tmp_path, db=DatabaseSettings(**db))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    settings = make_settings(tmp_path)
    upgrade(settings)
    database = Database(settings)
    database.start()
    yield database
    await database.close()


class Gate:
    """A write job that holds the writer thread until `open()` is called."""

    def __init__(self, before: Callable[[Connection], None] | None = None) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self._before = before

    def __call__(self, conn: Connection) -> str:
        if self._before is not None:
            self._before(conn)
        self.entered.set()
        if not self.released.wait(WAIT_S):
            raise TimeoutError("gate never opened")
        return "gate"

    async def hold(self, db: Database) -> asyncio.Task[str]:
        """Submit the gate and wait until the writer thread is inside it."""
        task = asyncio.create_task(db.write(self))
        assert await asyncio.to_thread(self.entered.wait, WAIT_S), "writer never took the gate"
        return task

    def open(self) -> None:
        self.released.set()


async def queue_behind(
    db: Database, works: list[Callable[[Connection], T]]
) -> list[asyncio.Task[T]]:
    """Submit `works` in order and return once every one is in the write queue."""
    before = db.queue_depth
    tasks = [asyncio.create_task(db.write(w)) for w in works]
    await asyncio.sleep(0)  # one turn of the loop: each new task runs up to its enqueue
    assert db.queue_depth == before + len(works)
    return tasks


def user_row(email: str, user_id: str | None = None) -> User:
    return User(user_id or new_id(), email, email.split("@")[0], now_ms())


def tx(conn: Connection) -> SqlTx:
    """The repositories over a job's connection."""
    return SqlTx(conn, Appended(outbox=False))


def insert_user(user: User) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        tx(conn).users.add(user, "hash")
        return user.id

    return work


async def user_ids(db: Database) -> set[str]:
    return await db.read(lambda c: set(c.execute(sa.select(users.c.id)).scalars()))


async def make_channel(db: Database) -> str:
    owner = user_row(f"{new_id()}@example.com")
    team = Team(new_id(), "team", owner.id, now_ms())
    channel = Channel(new_id(), team.id, "public", "general", 0, new_epoch(), owner.id, now_ms())

    def work(conn: Connection) -> str:
        tx(conn).users.add(owner, "hash")
        tx(conn).teams.add(team)
        tx(conn).channels.add(channel)
        return channel.id

    return await db.write(work)


async def test_concurrent_writes_share_commits_and_each_gets_its_own_result(
    db: Database,
) -> None:
    n = 200
    people = [user_row(f"u{i}-{new_id()}@example.com") for i in range(n)]
    commits_before, jobs_before = db.commits, db.jobs_committed

    results = await asyncio.gather(*(db.write(insert_user(u)) for u in people))

    assert results == [u.id for u in people]  # each caller got its own job's answer
    assert db.jobs_committed - jobs_before == n
    commits = db.commits - commits_before
    assert 1 <= commits < n, f"{n} concurrent writes took {commits} commits: no group commit"
    assert {u.id for u in people} <= await user_ids(db)


async def test_jobs_queued_behind_a_busy_writer_share_exactly_one_commit(db: Database) -> None:
    gate = Gate()
    commits_before = db.commits
    held = await gate.hold(db)
    people = [user_row(f"q{i}-{new_id()}@example.com") for i in range(50)]
    tasks = await queue_behind(db, [insert_user(u) for u in people])
    gate.open()

    assert await held == "gate"
    assert [await t for t in tasks] == [u.id for u in people]
    assert db.commits - commits_before == 2  # the gate's batch, then all 50 together


async def test_a_failing_job_rolls_back_alone_and_its_batch_commits(db: Database) -> None:
    first = user_row(f"first-{new_id()}@example.com")
    doomed = user_row(f"doomed-{new_id()}@example.com")
    last = user_row(f"last-{new_id()}@example.com")
    clash = user_row(f"clash-{new_id()}@example.com", user_id=first.id)

    def insert_then_raise(conn: Connection) -> str:
        tx(conn).users.add(doomed, "hash")  # written, then rolled back to its savepoint
        raise ValueError("boom")

    gate = Gate()
    commits_before = db.commits
    held = await gate.hold(db)
    ok1, bad, dup, ok2 = await queue_behind(
        db, [insert_user(first), insert_then_raise, insert_user(clash), insert_user(last)]
    )
    gate.open()
    await held

    assert await ok1 == first.id
    with pytest.raises(ValueError, match="boom"):
        await bad
    with pytest.raises(AlreadyExists):  # same primary key as `first`, same transaction
        await dup
    assert await ok2 == last.id
    assert db.commits - commits_before == 2  # the four jobs did share one transaction

    stored = await user_ids(db)
    assert first.id in stored
    assert last.id in stored
    assert doomed.id not in stored
    emails = await db.read(
        lambda c: list(c.execute(sa.select(users.c.email).where(users.c.id == first.id)).scalars())
    )
    assert emails == [first.email]  # the clashing job changed nothing


async def test_seq_allocation_under_200_concurrent_writes_is_1_to_200(db: Database) -> None:
    channel_id = await make_channel(db)

    def append(i: int) -> Callable[[Connection], int]:
        return lambda conn: tx(conn).events.append(channel_id, "test.event", {"i": i}).seq

    seqs = await asyncio.gather(*(db.write(append(i)) for i in range(200)))

    assert sorted(seqs) == list(range(1, 201))
    assert seqs == list(range(1, 201))  # the queue is FIFO: seqs follow submission order

    def stored(conn: Connection) -> tuple[list[int], int]:
        rows = conn.execute(
            sa.select(events.c.seq).where(events.c.channel_id == channel_id).order_by(events.c.seq)
        ).scalars()
        last = conn.execute(
            sa.select(channels.c.last_seq).where(channels.c.id == channel_id)
        ).scalar_one()
        return list(rows), int(last)

    rows, last_seq = await db.read(stored)
    assert rows == list(range(1, 201))
    assert last_seq == 200
    page = await db.read(lambda c: tx(c).events.after(channel_id, 0, 500))
    assert [orjson_i(e.data) for e in page] == list(range(200))


def orjson_i(data: bytes) -> int:
    value = orjson.loads(data)["i"]
    assert isinstance(value, int)
    return value


async def test_a_failed_job_does_not_consume_a_seq(db: Database) -> None:
    channel_id = await make_channel(db)

    def append_then_fail(conn: Connection) -> None:
        tx(conn).events.append(channel_id, "test.event", {"i": -1})
        raise ValueError("rolled back")

    def append(conn: Connection) -> int:
        return tx(conn).events.append(channel_id, "test.event", {}).seq

    gate = Gate()
    held = await gate.hold(db)
    a, bad, b = await queue_behind(db, [append, append_then_fail, append])
    gate.open()
    await held
    assert await a == 1
    with pytest.raises(ValueError, match="rolled back"):
        await bad
    assert await b == 2  # the failed job's seq was rolled back with it: no gap


async def test_write_is_shed_with_overloaded_beyond_max_queue(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_queue=1)
    upgrade(settings)
    db = Database(settings)
    db.start()
    try:
        gate = Gate()
        held = await gate.hold(db)  # the writer is busy; the queue is empty
        (waiting,) = await queue_behind(db, [lambda c: 1])  # the queue is now at max_queue
        with pytest.raises(Overloaded) as shed:
            await db.write(lambda c: 2)
        assert shed.value.retry_after_s == settings.limits.retry_after_s
        gate.open()
        assert await held == "gate"
        assert await waiting == 1  # what was queued before the limit still runs
        assert await db.write(lambda c: 3) == 3  # and the queue takes work again once drained
    finally:
        await db.close()


async def test_max_queue_zero_sheds_every_write(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_queue=0)
    upgrade(settings)
    db = Database(settings)
    db.start()
    try:
        with pytest.raises(Overloaded):
            await db.write(lambda c: 1)
        assert db.commits == 0
    finally:
        await db.close()


async def test_reads_run_beside_a_busy_writer_and_see_only_committed_rows(db: Database) -> None:
    pending = user_row(f"pending-{new_id()}@example.com")
    gate = Gate(before=lambda conn: tx(conn).users.add(pending, "hash"))
    held = await gate.hold(db)  # the writer sits inside an open transaction

    seen = await asyncio.wait_for(user_ids(db), WAIT_S)  # a reader is not blocked by it
    assert pending.id not in seen  # and does not see uncommitted work

    gate.open()
    await held
    assert pending.id in await user_ids(db)


async def test_a_cancelled_caller_s_write_still_runs(db: Database) -> None:
    """A send whose client gave up may be retried: its work must still be done once."""
    orphan = user_row(f"orphan-{new_id()}@example.com")
    after = user_row(f"after-{new_id()}@example.com")
    gate = Gate()
    held = await gate.hold(db)
    gone, kept = await queue_behind(db, [insert_user(orphan), insert_user(after)])
    gone.cancel()
    gate.open()
    await held
    assert await kept == after.id
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert {orphan.id, after.id} <= await user_ids(db)


async def test_close_finishes_queued_writes_and_then_refuses_new_ones(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    upgrade(settings)
    db = Database(settings)
    db.start()
    people = [user_row(f"c{i}-{new_id()}@example.com") for i in range(20)]
    gate = Gate()
    held = await gate.hold(db)
    tasks = await queue_behind(db, [insert_user(u) for u in people])
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0)  # let close() queue its stop marker behind the jobs

    # A write that arrives while the node is closing must fail at once, not hang.
    with pytest.raises(Unavailable):
        await asyncio.wait_for(db.write(lambda c: 1), WAIT_S)

    gate.open()
    await held
    assert [await t for t in tasks] == [u.id for u in people]
    await asyncio.wait_for(closing, WAIT_S)
    with pytest.raises(Unavailable):
        await db.write(lambda c: 1)

    reopened = Database(settings)
    reopened.start()
    try:
        assert {u.id for u in people} <= await user_ids(reopened)
    finally:
        await reopened.close()


async def test_write_before_start_is_unavailable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    upgrade(settings)
    db = Database(settings)
    try:
        with pytest.raises(Unavailable):
            await db.write(lambda c: 1)
    finally:
        await db.close()


def test_upgrade_records_its_revision_so_a_restart_can_run_it_again(tmp_path: Path) -> None:
    """Every start migrates; the second start on the same data must not recreate tables."""
    settings = make_settings(tmp_path)
    upgrade(settings)
    upgrade(settings)  # a restart on the same data_dir
    engine = sa.create_engine(settings.db_url())
    try:
        with engine.connect() as conn:
            versions = list(conn.exec_driver_sql("SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()
    assert len(versions) == 1


async def test_reads_beyond_the_pool_wait_and_beyond_max_read_queue_are_shed(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, read_threads=1, max_read_queue=1)
    upgrade(settings)
    db = Database(settings)
    db.start()
    try:
        started, release = threading.Event(), threading.Event()

        def blocking(conn: Connection) -> str:
            started.set()
            release.wait(WAIT_S)
            return "held"

        held = asyncio.ensure_future(db.read(blocking))
        assert await asyncio.to_thread(started.wait, WAIT_S)
        waiting = asyncio.ensure_future(db.read(lambda c: "queued"))
        await asyncio.sleep(0)  # the new task's first step submits it to the executor
        assert db.pool_status() | {"write_queue": 0} == {
            "readers": 1,
            "readers_busy": 1,
            "reads_waiting": 1,
            "write_queue": 0,
            "write_queue_max": settings.db.max_queue,
        }
        with pytest.raises(Overloaded) as shed:
            await db.read(lambda c: "shed")
        assert shed.value.retry_after_s == settings.limits.retry_after_s
        release.set()
        assert await held == "held"
        assert await waiting == "queued"
        assert db.pool_status()["readers_busy"] == 0
    finally:
        await db.close()


async def test_a_job_that_loses_the_server_midway_is_unavailable_not_a_500(
    tmp_path: Path,
) -> None:
    """Found by tests/chaos: PostgreSQL restarting between two statements of a send."""
    settings = make_settings(tmp_path)
    upgrade(settings)
    db = Database(settings)
    db.start()

    def lost(conn: Connection) -> None:
        conn.exec_driver_sql("SELECT 1")
        raise sa_exc.OperationalError("SELECT 2", {}, Exception("server closed the connection"))

    try:
        with pytest.raises(Unavailable):
            await db.write(lost)
        assert await db.write(lambda c: c.exec_driver_sql("SELECT 3").scalar()) == 3
    finally:
        await db.close()


async def test_housekeeping_deletes_old_finished_jobs_and_keeps_the_rest(db: Database) -> None:
    from realtimechat.storage.tables import notification_jobs

    day = 24 * 3600 * 1000
    now = 100 * day
    rows = {
        "old-sent": ("sent", now - 8 * day),
        "old-skipped": ("skipped", now - 8 * day),
        "new-sent": ("sent", now - 1 * day),
        "dead-8d": ("dead", now - 8 * day),
        "dead-31d": ("dead", now - 31 * day),
        "old-pending": ("pending", now - 60 * day),
        "old-sending": ("sending", now - 60 * day),
    }

    def seed(conn: Connection) -> None:
        for job_id, (state, updated_at) in rows.items():
            conn.execute(
                notification_jobs.insert().values(
                    id=job_id, user_id="u", channel_id="c", seq=1, kind="push",
                    reason="dm", state=state, due_at=0, created_at=0, updated_at=updated_at,
                )
            )  # fmt: skip

    await db.write(seed)
    deleted = await db.write(
        lambda c: tx(c).notifications.delete_finished(now - 7 * day, now - 30 * day)
    )
    assert deleted == 3
    left = await db.read(lambda c: set(c.execute(sa.select(notification_jobs.c.id)).scalars()))
    assert left == {"new-sent", "dead-8d", "old-pending", "old-sending"}
