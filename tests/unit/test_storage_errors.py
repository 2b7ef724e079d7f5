"""The storage boundary: a unit of work that breaks a foreign key answers a domain
Conflict (a 409 at the edge), alone in its batch; a unique violation answers
AlreadyExists, which the services resolve (retried sends, register races)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from realtimechat.domain.errors import AlreadyExists, Conflict
from realtimechat.domain.models import Team, User
from realtimechat.ids import new_id, now_ms
from realtimechat.settings import Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.teams import SqlTeams
from realtimechat.storage.users import SqlUsers


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
    await db.write(lambda c: SqlUsers(c).add(user, "hash"))
    ghost_team = team_of(new_id())  # created_by: no such user
    real_team = team_of(user.id)

    def insert(team: Team) -> Callable[[Connection], None]:
        return lambda conn: SqlTeams(conn).add(team)

    ghost, real = await asyncio.gather(
        db.write(insert(ghost_team)), db.write(insert(real_team)), return_exceptions=True
    )
    assert isinstance(ghost, Conflict)
    assert isinstance(ghost.__cause__, sa_exc.IntegrityError)
    assert real is None
    found = await db.read(lambda c: SqlTeams(c).get(real_team.id))
    assert found is not None


async def test_a_unique_violation_is_already_exists(db: Database) -> None:
    user = User(new_id(), f"{new_id()}@example.com", "u", now_ms())
    await db.write(lambda c: SqlUsers(c).add(user, "hash"))

    def again(conn: Connection) -> None:
        SqlUsers(conn).add(user, "hash")

    with pytest.raises(AlreadyExists) as raised:
        await db.write(again)
    assert isinstance(raised.value.__cause__, sa_exc.IntegrityError)
