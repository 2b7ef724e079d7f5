"""Upload reservations on a real database (SQLite and PostgreSQL) and a real disk store,
with the file service's clock in the test's hands: expiry is enforced at once, a user's
pending uploads are bounded, and a cancelled or expired upload keeps no bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realtimechat.blobs.base import UploadTarget
from realtimechat.blobs.local import LocalDiskStore
from realtimechat.domain.errors import (
    Conflict,
    NotFound,
    PendingUploadsLimit,
    QuotaExceeded,
    UploadAlreadyComplete,
    UploadCancelled,
    UploadExpired,
)
from realtimechat.domain.files import FileRecord
from realtimechat.domain.models import User
from realtimechat.services.channels import ChannelService
from realtimechat.services.files import FileService
from realtimechat.settings import FileSettings, Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlTx, SqlUnitOfWork
from tests.postgres import postgres_server
from tests.support import ManualClock

URL_TTL_S = 30
PENDING_S = 60
QUOTA = 1000
BASE = "http://127.0.0.1:8000"


@dataclass
class Rig:
    """A file service over a real database and disk, and the clock both run on."""

    files: FileService
    store: LocalDiskStore
    uow: SqlUnitOfWork
    clock: ManualClock
    team_id: str


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = (await stack.enter_async_context(postgres_server())).url
        settings = Settings(data_dir=tmp_path, database_url=url)
        await asyncio.to_thread(upgrade, settings)
        db = Database(settings)
        db.start()
        stack.push_async_callback(db.close)

        def users(tx: SqlTx) -> None:
            for uid in ("u1", "u2", "u3"):
                tx.users.add(User(uid, f"{uid}@example.com", uid, 0), "h")

        await SqlUnitOfWork(db).write(users)
        yield db


async def rig(database: Database, tmp_path: Path, **settings: int) -> Rig:
    clock = ManualClock()
    store = LocalDiskStore(tmp_path / "blobs", b"test-secret-0123456789abcdef", clock=clock)
    cfg = FileSettings(
        team_quota_bytes=QUOTA, url_ttl_s=URL_TTL_S, pending_timeout_s=PENDING_S, **settings
    )
    uow = SqlUnitOfWork(database)
    files = FileService(uow=uow, store=store, settings=cfg, clock=lambda: int(clock() * 1000))
    channels = ChannelService(uow=uow)
    team = await channels.create_team("u1", "Acme")
    for uid in ("u2", "u3"):
        await channels.add_team_member("u1", team.id, user_id=uid)
    return Rig(files, store, uow, clock, team.id)


def blob(n: int) -> bytes:
    return b"b" * n


async def declare(r: Rig, user: str, size: int) -> tuple[FileRecord, UploadTarget]:
    data = blob(size)
    f, target, _ = await r.files.create(
        user, r.team_id, "f.bin", size, "application/octet-stream",
        hashlib.sha256(data).hexdigest(), BASE,
    )  # fmt: skip
    return f, target


async def used(r: Rig) -> int:
    return int((await r.files.usage("u1", r.team_id))["used_bytes"])


async def counted(r: Rig) -> int:
    """The team's usage counter as stored (what a reservation is checked against)."""
    return await r.uow.read(lambda tx: tx.files.used_bytes(r.team_id))


async def put(r: Rig, f: FileRecord) -> None:
    """What PUT /api/v1/blobs/... does: ask, store, ask again."""
    upload = await r.files.begin_upload(f.storage_key)

    async def chunks() -> AsyncIterator[bytes]:
        yield blob(f.size)

    await r.store.write(f.storage_key, chunks(), f.size, f.sha256)
    await r.files.end_upload(upload)


async def test_an_expired_reservation_stops_counting_at_once(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path)
    first, _ = await declare(r, "u1", 600)
    with pytest.raises(QuotaExceeded):
        await declare(r, "u2", 600)
    r.clock.advance(PENDING_S - 1)
    assert await used(r) == 600  # still within its lifetime
    r.clock.advance(1)
    # Expired, and no reconciliation has run: the usage no longer counts it...
    assert await used(r) == 0
    assert (await r.files.usage("u1", r.team_id))["files"] == 0
    # ...a new reservation releases it in its own transaction, so it fits...
    second, _ = await declare(r, "u2", 600)
    assert await counted(r) == 600
    assert await used(r) == 600
    # ...and the expired one's URL takes no bytes, nor can it be completed.
    with pytest.raises(UploadExpired):
        await r.files.begin_upload(first.storage_key)
    with pytest.raises(Conflict, match="cancelled or expired"):  # released: as if cancelled
        await r.files.complete("u1", first.id)
    await put(r, second)
    assert (await r.files.complete("u2", second.id)).state == "ready"


async def test_an_expired_reservation_refuses_bytes_even_before_it_is_released(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path)
    f, _ = await declare(r, "u1", 100)
    r.clock.advance(PENDING_S)
    with pytest.raises(UploadExpired):
        await r.files.complete("u1", f.id)
    f, _ = await declare(r, "u1", 100)
    r.clock.advance(PENDING_S)
    with pytest.raises(UploadExpired):
        await r.files.begin_upload(f.storage_key)
    # Refusing it released it: the counter is right without waiting for reconciliation.
    assert await counted(r) == 0
    assert not r.store.path(f.storage_key).exists()


async def test_a_users_pending_uploads_are_bounded_in_count_and_bytes(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path, max_pending_per_user=3, max_pending_bytes_per_user=500)
    mine = [(await declare(r, "u1", 100))[0] for _ in range(3)]
    with pytest.raises(PendingUploadsLimit) as refused:
        await declare(r, "u1", 100)
    assert refused.value.code == "too_many_pending_uploads"
    assert refused.value.extra == {
        "pending_uploads": 3,
        "pending_bytes": 300,
        "max_pending_uploads": 3,
        "max_pending_bytes": 500,
    }
    # Another member is not held back by u1's uploads; bytes are bounded as well.
    await declare(r, "u2", 400)
    with pytest.raises(PendingUploadsLimit):
        await declare(r, "u2", 101)
    await declare(r, "u2", 100)
    # A completed or cancelled upload no longer waits, so another fits.
    await put(r, mine[0])
    await r.files.complete("u1", mine[0].id)
    await r.files.cancel("u1", mine[1].id)
    await declare(r, "u1", 100)
    await declare(r, "u1", 100)
    with pytest.raises(PendingUploadsLimit):
        await declare(r, "u1", 100)
    # Expired ones do not count either.
    r.clock.advance(PENDING_S)
    for _ in range(3):
        await declare(r, "u1", 100)


async def test_concurrent_declarations_of_one_user_stop_at_the_bound(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path, max_pending_per_user=10)
    nodes = [r.files]
    if not database.url.startswith("sqlite"):
        # Two nodes' writers on one PostgreSQL, as a cluster runs them.
        other = Database(Settings(data_dir=tmp_path, database_url=database.url))
        other.start()
        cfg = FileSettings(team_quota_bytes=QUOTA, max_pending_per_user=10)
        nodes.append(
            FileService(
                uow=SqlUnitOfWork(other),
                store=r.store,
                settings=cfg,
                clock=lambda: int(r.clock() * 1000),
            )
        )
    try:
        digest = hashlib.sha256(blob(10)).hexdigest()
        results = await asyncio.gather(
            *(
                nodes[i % len(nodes)].create(
                    "u1", r.team_id, "f.bin", 10, "text/plain", digest, BASE
                )
                for i in range(30)
            ),
            return_exceptions=True,
        )
    finally:
        if len(nodes) > 1:
            await other.close()
    created = [x for x in results if isinstance(x, tuple)]
    refused = [x for x in results if isinstance(x, PendingUploadsLimit)]
    assert (len(created), len(refused)) == (10, 20), results
    assert await counted(r) == 100


async def test_bytes_that_raced_a_cancel_are_removed(database: Database, tmp_path: Path) -> None:
    r = await rig(database, tmp_path)
    f, _ = await declare(r, "u1", 200)
    upload = await r.files.begin_upload(f.storage_key)  # the PUT started in time...
    await r.files.cancel("u1", f.id)  # ...then the upload was cancelled...

    async def chunks() -> AsyncIterator[bytes]:
        yield blob(200)

    await r.store.write(f.storage_key, chunks(), 200, f.sha256)  # ...and its bytes landed
    with pytest.raises(UploadCancelled):
        await r.files.end_upload(upload)
    assert not r.store.path(f.storage_key).exists()
    assert await r.store.keys("teams/") == []
    assert await counted(r) == 0
    with pytest.raises(UploadCancelled):
        await r.files.begin_upload(f.storage_key)


async def test_bytes_that_outlived_their_reservation_are_removed(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path)
    f, _ = await declare(r, "u1", 200)
    upload = await r.files.begin_upload(f.storage_key)

    async def chunks() -> AsyncIterator[bytes]:
        r.clock.advance(PENDING_S)  # a slow upload: the reservation ends meanwhile
        yield blob(200)

    await r.store.write(f.storage_key, chunks(), 200, f.sha256)
    with pytest.raises(UploadExpired):
        await r.files.end_upload(upload)
    assert await r.store.keys("teams/") == []
    assert await counted(r) == 0


async def test_a_completed_uploads_url_takes_no_more_bytes(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path)
    f, _ = await declare(r, "u1", 50)
    await put(r, f)
    await r.files.complete("u1", f.id)
    with pytest.raises(UploadAlreadyComplete):
        await r.files.begin_upload(f.storage_key)
    with pytest.raises(NotFound):
        await r.files.begin_upload("teams/other/" + f.id)  # a key naming no upload


async def test_a_download_link_ends_with_its_viewers_access(
    database: Database, tmp_path: Path
) -> None:
    r = await rig(database, tmp_path, download_url_ttl_s=60)
    f, _ = await declare(r, "u1", 50)
    await put(r, f)
    await r.files.complete("u1", f.id)
    url = await r.files.download_url("u1", f.id, BASE)
    assert "viewer=u1" in url
    assert f"expires={int(r.clock()) + 60}" in url
    assert (await r.files.check_download(f.storage_key, "u1")).id == f.id
    with pytest.raises(NotFound):  # never shared with u2
        await r.files.check_download(f.storage_key, "u2")
    await r.files.cancel("u1", f.id)
    with pytest.raises(NotFound):
        await r.files.check_download(f.storage_key, "u1")
