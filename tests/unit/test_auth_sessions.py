"""Sign-in lockout and session revocation in AuthService, on a real SQLite database
(the failure count is an atomic statement: concurrent guesses are each counted).

Time is a manual clock: locks end and revocations lapse when the test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from realtimechat.domain.errors import (
    InvalidCredentials,
    LoginLocked,
    RefreshTokenReused,
    SessionRevoked,
)
from realtimechat.ids import now_ms
from realtimechat.services.auth import AuthService
from realtimechat.services.sessions import Revocations
from realtimechat.settings import AuthSettings, Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlUnitOfWork
from tests.support.clock import ManualMsClock

PASSWORD = "correct horse battery"
SETTINGS = AuthSettings(
    hash_time_cost=1,
    hash_memory_kib=1024,
    lockout_free_attempts=3,
    lockout_base_s=10,
    lockout_max_s=60,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    database = Database(settings)
    database.start()
    yield database
    await database.close()


def node(db: Database, clock: ManualMsClock) -> AuthService:
    """One node's auth service (several share a database like nodes of a cluster)."""
    uow = SqlUnitOfWork(db)
    revocations = Revocations(uow=uow, poll_s=1.0, clock=clock)
    return AuthService(
        uow=uow, settings=SETTINGS, secret="s" * 32, revocations=revocations, clock=clock
    )


async def test_failures_lock_the_address_then_the_lock_ends(db: Database) -> None:
    clock = ManualMsClock(now_ms())  # from now, so the JWTs it dates stay valid
    auth = node(db, clock)
    await auth.register("ada@example.com", PASSWORD, "Ada")
    for _ in range(4):  # 3 free, the 4th locks for 10 s
        with pytest.raises(InvalidCredentials):
            await auth.login("ada@example.com", "wrong password")
    with pytest.raises(LoginLocked) as locked:
        await auth.login("ada@example.com", PASSWORD)  # the right one waits too
    assert locked.value.retry_after_s == 10
    clock.advance(9)
    with pytest.raises(LoginLocked) as locked:
        await auth.login("ADA@example.com ", PASSWORD)
    assert locked.value.retry_after_s == 1
    clock.advance(1)
    await auth.login("ada@example.com", PASSWORD)
    # Success cleared the count: three free failures again.
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await auth.login("ada@example.com", "wrong password")
    with pytest.raises(InvalidCredentials):
        await auth.login("ada@example.com", "wrong again")
    with pytest.raises(LoginLocked):
        await auth.login("ada@example.com", PASSWORD)


async def test_the_lock_doubles_up_to_its_cap(db: Database) -> None:
    clock = ManualMsClock(now_ms())
    auth = node(db, clock)
    waits: list[int] = []
    while len(waits) < 5:
        try:
            await auth.login("nobody@example.com", "guess")
        except LoginLocked as exc:
            waits.append(exc.retry_after_s)
            clock.advance(exc.retry_after_s)
        except InvalidCredentials:
            pass
    assert waits == [10, 20, 40, 60, 60]


async def test_an_address_without_an_account_locks_exactly_alike(db: Database) -> None:
    clock = ManualMsClock(now_ms())
    auth = node(db, clock)
    await auth.register("real@example.com", PASSWORD, "Real")
    answers: dict[str, list[str]] = {}
    for email in ("real@example.com", "ghost@example.com"):
        for _ in range(5):
            try:
                await auth.login(email, "wrong password")
            except (InvalidCredentials, LoginLocked) as exc:
                answers.setdefault(email, []).append(f"{exc.code}:{exc.detail}")
    assert answers["real@example.com"] == answers["ghost@example.com"]
    assert answers["real@example.com"][-1].startswith("login_locked:")


async def test_concurrent_guesses_are_each_counted(db: Database) -> None:
    clock = ManualMsClock(now_ms())
    auth = node(db, clock)
    await auth.register("burst@example.com", PASSWORD, "Burst")

    async def guess() -> str:
        try:
            await auth.login("burst@example.com", "wrong password")
        except (InvalidCredentials, LoginLocked) as exc:
            return exc.code
        return "ok"

    codes = await asyncio.gather(*(guess() for _ in range(20)))
    # Only the free three and the one that set the lock reached the password check.
    assert codes.count("invalid_credentials") == 4
    assert codes.count("login_locked") == 16


async def test_logout_ends_the_access_token_here_at_once_and_on_another_node_on_refresh(
    db: Database,
) -> None:
    clock = ManualMsClock(now_ms())
    here, there = node(db, clock), node(db, clock)
    told: list[Collection[str]] = []
    there.revocations.on_revoked(told.append)
    await here.register("eve@example.com", PASSWORD, "Eve")
    pair = await here.login("eve@example.com", PASSWORD)
    other = await here.login("eve@example.com", PASSWORD)  # a second login stays
    await there.revocations.refresh()
    session = here.authenticate(pair.access_token).session_id
    assert session is not None
    assert there.authenticate(pair.access_token).session_id == session

    await here.logout(pair.refresh_token)
    with pytest.raises(SessionRevoked):
        here.authenticate(pair.access_token)
    there.authenticate(pair.access_token)  # not yet read from the database
    assert await there.revocations.refresh() == [session]
    assert told == [[session]]
    with pytest.raises(SessionRevoked):
        there.authenticate(pair.access_token)
    assert there.authenticate(other.access_token).user_id  # another login is untouched
    assert await there.revocations.refresh() == []  # read again: nothing new, no one told
    assert told == [[session]]

    # Kept as long as the login's access tokens can live, then forgotten.
    clock.advance(SETTINGS.access_ttl_s + 2)
    await there.revocations.refresh()
    assert not there.revocations.is_revoked(session)


async def test_refresh_token_reuse_revokes_the_access_tokens_of_the_login(db: Database) -> None:
    clock = ManualMsClock(now_ms())
    auth = node(db, clock)
    await auth.register("mallory@example.com", PASSWORD, "Mallory")
    first = await auth.login("mallory@example.com", PASSWORD)
    second = await auth.refresh(first.refresh_token)
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(first.refresh_token)  # the stolen copy
    for token in (first.access_token, second.access_token):
        with pytest.raises(SessionRevoked):
            auth.authenticate(token)
    fresh = node(db, clock)  # a node started later loads the set at start
    await fresh.revocations.refresh()
    with pytest.raises(SessionRevoked):
        fresh.authenticate(second.access_token)
