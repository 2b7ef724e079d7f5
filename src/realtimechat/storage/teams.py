"""Teams, their members and their pending invitations."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import Invitation, Member, Role, Team
from realtimechat.storage.postgres import upsert_insert
from realtimechat.storage.tables import team_invitations, team_members, teams, users


class SqlTeams:
    """The teams and team_members tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, team: Team) -> None:
        self._conn.execute(
            teams.insert().values(
                id=team.id, name=team.name, created_by=team.created_by, created_at=team.created_at
            )
        )

    def get(self, team_id: str) -> Team | None:
        row = self._conn.execute(sa.select(teams).where(teams.c.id == team_id)).first()
        return Team(row.id, row.name, row.created_by, row.created_at) if row else None

    def role(self, team_id: str, user_id: str) -> Role | None:
        role = self._conn.execute(
            sa.select(team_members.c.role).where(
                team_members.c.team_id == team_id, team_members.c.user_id == user_id
            )
        ).scalar()
        return cast(Role | None, role)

    def add_member(self, team_id: str, user_id: str, role: Role, at: int) -> None:
        self._conn.execute(
            team_members.insert().values(team_id=team_id, user_id=user_id, role=role, joined_at=at)
        )

    def add_member_if_absent(self, team_id: str, user_id: str, role: Role, at: int) -> bool:
        result = self._conn.execute(
            upsert_insert(self._conn, team_members)
            .values(team_id=team_id, user_id=user_id, role=role, joined_at=at)
            .on_conflict_do_nothing(index_elements=["team_id", "user_id"])
        )
        return bool(result.rowcount)

    def of_user(self, user_id: str) -> list[Team]:
        rows = self._conn.execute(
            sa.select(teams, team_members.c.role)
            .join(team_members, team_members.c.team_id == teams.c.id)
            .where(team_members.c.user_id == user_id)
            .order_by(teams.c.created_at)
        )
        return [Team(r.id, r.name, r.created_by, r.created_at, cast(Role, r.role)) for r in rows]

    def members(self, team_id: str) -> list[Member]:
        rows = self._conn.execute(
            sa.select(team_members, users.c.display_name)
            .join(users, users.c.id == team_members.c.user_id)
            .where(team_members.c.team_id == team_id)
            .order_by(team_members.c.joined_at)
        )
        return [Member(r.user_id, r.display_name, cast(Role, r.role), r.joined_at) for r in rows]


class SqlInvitations:
    """The team_invitations table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def prune(self, team_id: str, now: int) -> None:
        self._conn.execute(
            team_invitations.delete().where(
                team_invitations.c.team_id == team_id, team_invitations.c.expires_at <= now
            )
        )

    def pending_besides(self, team_id: str, email: str, now: int) -> int:
        return int(
            self._conn.execute(
                sa.select(sa.func.count()).where(
                    team_invitations.c.team_id == team_id,
                    team_invitations.c.email != email,
                    team_invitations.c.expires_at > now,
                )
            ).scalar_one()
        )

    def put(self, invitation: Invitation) -> None:
        stmt = upsert_insert(self._conn, team_invitations).values(
            team_id=invitation.team_id,
            email=invitation.email,
            invited_by=invitation.invited_by,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
        )
        self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["team_id", "email"],
                set_={
                    "invited_by": stmt.excluded.invited_by,
                    "created_at": stmt.excluded.created_at,
                    "expires_at": stmt.excluded.expires_at,
                },
            )
        )

    def of_user(self, user_id: str, now: int) -> list[Invitation]:
        rows = self._conn.execute(
            sa.select(team_invitations)
            .join(users, users.c.email == team_invitations.c.email)
            .where(users.c.id == user_id, team_invitations.c.expires_at > now)
            .order_by(team_invitations.c.created_at)
        )
        return [
            Invitation(r.team_id, r.email, r.invited_by, r.created_at, r.expires_at) for r in rows
        ]

    def delete(self, team_id: str, email: str) -> None:
        self._conn.execute(
            team_invitations.delete().where(
                team_invitations.c.team_id == team_id, team_invitations.c.email == email
            )
        )
