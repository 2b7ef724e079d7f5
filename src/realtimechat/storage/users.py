"""Accounts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import User
from realtimechat.storage.tables import team_members, users


def user_from_row(row: Any) -> User:
    return User(row.id, row.email, row.display_name, row.created_at)


class SqlUsers:
    """The users table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, user: User, password_hash: str) -> None:
        self._conn.execute(
            users.insert().values(
                id=user.id,
                email=user.email,
                display_name=user.display_name,
                password_hash=password_hash,
                created_at=user.created_at,
            )
        )

    def get(self, user_id: str) -> User | None:
        row = self._conn.execute(sa.select(users).where(users.c.id == user_id)).first()
        return user_from_row(row) if row else None

    def with_hash_by_email(self, email: str) -> tuple[User, str] | None:
        row = self._conn.execute(sa.select(users).where(users.c.email == email)).first()
        return (user_from_row(row), row.password_hash) if row else None

    def email(self, user_id: str) -> str | None:
        return self._conn.execute(sa.select(users.c.email).where(users.c.id == user_id)).scalar()

    def share_team(self, a: str, b: str) -> bool:
        tm2 = team_members.alias("tm2")
        row = self._conn.execute(
            sa.select(team_members.c.team_id)
            .join(tm2, tm2.c.team_id == team_members.c.team_id)
            .where(team_members.c.user_id == a, tm2.c.user_id == b)
            .limit(1)
        ).first()
        return row is not None
