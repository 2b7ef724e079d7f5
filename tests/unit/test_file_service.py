"""FileService on the fake unit of work and an in-memory store: the quota is reserved
before any byte, a reservation expires on the manual clock and gives its bytes back,
a wrong upload is discarded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from realtimechat.domain.errors import (
    ChecksumMismatch,
    FeatureDisabled,
    NotFound,
    PendingUploadsLimit,
    QuotaExceeded,
    UploadExpired,
    UploadIncomplete,
)
from realtimechat.domain.files import FileRecord
from realtimechat.services.channels import ChannelService
from realtimechat.services.files import FileService
from realtimechat.settings import FileSettings
from tests.support.clock import ManualMsClock
from tests.support.fake_uow import FakeUnitOfWork, seed_users
from tests.support.memory_store import MemoryStore

QUOTA = 1000
PENDING_S = 900
BASE = "http://chat.test"


@dataclass
class World:
    uow: FakeUnitOfWork
    clock: ManualMsClock
    store: MemoryStore
    files: FileService
    team_id: str


@pytest.fixture
async def w() -> World:
    clock = ManualMsClock()
    uow = FakeUnitOfWork(clock=clock)
    seed_users(uow, "ada", "bob", "eve")
    store = MemoryStore()
    settings = FileSettings(
        team_quota_bytes=QUOTA, url_ttl_s=300, pending_timeout_s=PENDING_S, max_pending_per_user=3
    )
    files = FileService(uow=uow, store=store, settings=settings, clock=clock)
    channels = ChannelService(uow=uow, clock=clock)
    team = await channels.create_team("ada", "Acme")
    await channels.add_team_member("ada", team.id, user_id="bob")
    return World(uow, clock, store, files, team.id)


def data(n: int) -> bytes:
    return b"x" * n


async def declare(w: World, user: str, size: int) -> FileRecord:
    digest = hashlib.sha256(data(size)).hexdigest()
    f, _target, _expires = await w.files.create(
        user, w.team_id, "f.bin", size, "application/octet-stream", digest, BASE
    )
    return f


async def used(w: World) -> int:
    return int((await w.files.usage("ada", w.team_id))["used_bytes"])


async def test_the_quota_is_reserved_at_declaration_and_refuses_what_does_not_fit(
    w: World,
) -> None:
    await declare(w, "ada", 600)
    assert await used(w) == 600
    with pytest.raises(QuotaExceeded) as refused:
        await declare(w, "bob", 401)
    assert refused.value.extra == {"used_bytes": 600, "quota_bytes": QUOTA}
    await declare(w, "bob", 400)  # exactly fills it
    assert await used(w) == QUOTA


async def test_a_reservation_expires_on_the_clock_and_its_bytes_come_back(w: World) -> None:
    f = await declare(w, "ada", 900)
    w.clock.advance(PENDING_S - 1)
    assert await used(w) == 900  # still live
    w.clock.advance(1)
    assert await used(w) == 0  # expired: no longer counted, even before anyone releases it
    w.store.objects[f.storage_key] = data(900)  # the bytes arrive too late
    with pytest.raises(UploadExpired):
        await w.files.complete("ada", f.id)
    assert w.uow.state.files[f.id].state == "deleted"
    assert f.storage_key not in w.store.objects
    assert w.uow.state.team_storage[w.team_id] == 0
    await declare(w, "bob", 900)  # and its room is free again


async def test_complete_checks_the_bytes_against_the_declaration(w: World) -> None:
    f = await declare(w, "ada", 100)
    with pytest.raises(UploadIncomplete):
        await w.files.complete("ada", f.id)
    w.store.objects[f.storage_key] = data(99) + b"y"  # same size, other bytes
    with pytest.raises(ChecksumMismatch):
        await w.files.complete("ada", f.id)
    assert await used(w) == 0
    assert f.storage_key not in w.store.objects
    good = await declare(w, "ada", 100)
    w.store.objects[good.storage_key] = data(100)
    ready = await w.files.complete("ada", good.id)
    assert ready.state == "ready"
    assert (await w.files.get("ada", good.id)).id == good.id
    with pytest.raises(NotFound):  # shared nowhere: only its uploader sees it
        await w.files.get("bob", good.id)


async def test_uploads_wait_per_user_and_stop_at_the_bound(w: World) -> None:
    for _ in range(3):
        await declare(w, "ada", 10)
    with pytest.raises(PendingUploadsLimit):
        await declare(w, "ada", 10)
    await declare(w, "bob", 10)  # another user's own bound
    w.clock.advance(PENDING_S)
    await declare(w, "ada", 10)  # the expired ones no longer wait


async def test_outsiders_and_a_switched_off_feature_are_refused(w: World) -> None:
    with pytest.raises(NotFound):
        await declare(w, "eve", 10)  # not in the team
    w.uow.state.flags["uploads"] = False
    with pytest.raises(FeatureDisabled):
        await declare(w, "ada", 10)
    assert w.uow.state.files == {}


async def test_reconcile_removes_abandoned_uploads_and_orphans(w: World) -> None:
    abandoned = await declare(w, "ada", 50)
    w.store.objects["teams/orphan"] = b"left behind"
    w.clock.advance(PENDING_S)
    report = await w.files.reconcile()
    assert report.abandoned == [abandoned.id]
    assert report.orphans == ["teams/orphan"]
    assert w.uow.state.team_storage[w.team_id] == 0
