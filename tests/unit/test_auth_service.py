"""AuthService on the fake unit of work: registration races, refresh rotation and reuse
detection (lockout runs on real SQLite in test_auth_sessions.py)."""

from __future__ import annotations

import pytest

from realtimechat.domain.errors import (
    EmailTaken,
    RefreshTokenReused,
    RefreshTokenRevoked,
    SessionRevoked,
    TokenExpired,
    Unauthorized,
)
from realtimechat.ids import now_ms
from realtimechat.services.auth import AuthService
from realtimechat.services.sessions import Revocations
from realtimechat.settings import AuthSettings
from tests.support.clock import ManualMsClock
from tests.support.fake_uow import FakeUnitOfWork

PASSWORD = "correct horse battery"
SETTINGS = AuthSettings(
    hash_time_cost=1,
    hash_memory_kib=1024,
    lockout_free_attempts=3,
    lockout_base_s=10,
    lockout_max_s=60,
    refresh_ttl_s=3600,
)


def service(uow: FakeUnitOfWork, clock: ManualMsClock) -> AuthService:
    revocations = Revocations(uow=uow, poll_s=1.0, clock=clock)
    return AuthService(
        uow=uow, settings=SETTINGS, secret="s" * 32, revocations=revocations, clock=clock
    )


@pytest.fixture
def clock() -> ManualMsClock:
    # Tokens are checked against the real time too: start early enough that moving the
    # clock on never dates one in the future.
    return ManualMsClock(now_ms() - 120_000)


@pytest.fixture
def uow(clock: ManualMsClock) -> FakeUnitOfWork:
    return FakeUnitOfWork(clock=clock)


async def test_an_address_registers_once_even_in_a_race(
    uow: FakeUnitOfWork, clock: ManualMsClock
) -> None:
    auth = service(uow, clock)
    await auth.register(" Ada@Example.com", PASSWORD, "Ada")
    with pytest.raises(EmailTaken):
        await auth.register("ada@example.com", PASSWORD, "Ada again")
    uow.lose_next_race()  # another node registers the same address at the same moment
    with pytest.raises(EmailTaken):
        await auth.register("bob@example.com", PASSWORD, "Bob")
    assert sorted(u.email for u, _ in uow.state.users.values()) == [
        "ada@example.com",
        "bob@example.com",
    ]


async def test_refresh_rotates_and_reuse_revokes_the_whole_login(
    uow: FakeUnitOfWork, clock: ManualMsClock
) -> None:
    auth = service(uow, clock)
    await auth.register("ada@example.com", PASSWORD, "Ada")
    first = await auth.login("ada@example.com", PASSWORD)
    second = await auth.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert auth.authenticate(second.access_token).session_id is not None
    with pytest.raises(RefreshTokenReused):  # the old one again: a stolen copy
        await auth.refresh(first.refresh_token)
    with pytest.raises(RefreshTokenRevoked):  # and the family is gone with it
        await auth.refresh(second.refresh_token)
    with pytest.raises(SessionRevoked):
        auth.authenticate(second.access_token)
    # Another node learns of it from the stored revocation.
    other = service(uow, clock)
    assert await other.revocations.refresh() != []
    with pytest.raises(SessionRevoked):
        other.authenticate(second.access_token)


async def test_logout_ends_the_login_and_an_expired_refresh_is_refused(
    uow: FakeUnitOfWork, clock: ManualMsClock
) -> None:
    auth = service(uow, clock)
    await auth.register("ada@example.com", PASSWORD, "Ada")
    signed_out = await auth.login("ada@example.com", PASSWORD)
    await auth.logout(signed_out.refresh_token)
    with pytest.raises(RefreshTokenRevoked):
        await auth.refresh(signed_out.refresh_token)
    with pytest.raises(Unauthorized):
        await auth.refresh("never issued")
    old = await auth.login("ada@example.com", PASSWORD)
    clock.advance(3600)
    with pytest.raises(TokenExpired):
        await auth.refresh(old.refresh_token)
