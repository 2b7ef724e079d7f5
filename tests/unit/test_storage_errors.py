"""The storage boundary: a unit of work that breaks a foreign key answers a domain
Conflict (a 409 at the edge), alone in its batch; a unique violation stays the
IntegrityError the services handle (retried sends, register races)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from realtimechat.domain.errors import Conflict
from realtimechat.domain.models import Team, User
from realtimechat.ids import new_id, now_ms
from realtimechat.settings import Settings
from realtimechat.storage import repositories as repo
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    database = Database(settings)
    database.start()
    yield database
    await database.close()


def team_of(user_id: str) -> Team:
    return Team(new_id(), "t", user_id, now_ms())


async def test_a_reference_to_a_missing_row_is_a_conflict_and_others_commit(db: Database) -> None:
    user = User(new_id(), f"{new_id()}@example.com", "u", now_ms())
    await db.write(lambda c: repo.insert_user(c, user, "hash"))
    ghost_team = team_of(new_id())  # created_by: no such user
    real_team = team_of(user.id)

    def insert(team: Team) -> Callable[[Connection], None]:
        return lambda conn: repo.insert_team(conn, team)

    ghost, real = await asyncio.gather(
        db.write(insert(ghost_team)), db.write(insert(real_team)), return_exceptions=True
    )
    assert isinstance(ghost, Conflict)
    assert isinstance(ghost.__cause__, sa_exc.IntegrityError)
    assert real is None
    found = await db.read(lambda c: repo.team_by_id(c, real_team.id))
    assert found is not None


async def test_a_unique_violation_stays_an_integrity_error(db: Database) -> None:
    user = User(new_id(), f"{new_id()}@example.com", "u", now_ms())
    await db.write(lambda c: repo.insert_user(c, user, "hash"))

    def again(conn: Connection) -> None:
        repo.insert_user(conn, user, "hash")

    with pytest.raises(sa_exc.IntegrityError):
        await db.write(again)
