"""Teams and their members."""

from __future__ import annotations

from typing import cast, overload

from realtimechat_client.models import Invitation, Member, Team
from realtimechat_client.transport import Transport

__all__ = ["TeamsAPI"]


class TeamsAPI:
    _transport: Transport

    async def create_team(self, name: str) -> Team:
        """A new team, owned by you."""
        return cast(
            Team,
            await self._transport.json(
                "POST", "/api/v1/teams", json={"name": name}, idempotent=False
            ),
        )

    async def list_teams(self) -> list[Team]:
        """Your teams."""
        return cast(list[Team], (await self._transport.json("GET", "/api/v1/teams"))["teams"])

    async def get_team(self, team_id: str) -> Team:
        """One of your teams."""
        return cast(Team, await self._transport.json("GET", f"/api/v1/teams/{team_id}"))

    @overload
    async def add_team_member(self, team_id: str, *, user_id: str) -> Member: ...
    @overload
    async def add_team_member(self, team_id: str, *, email: str) -> Invitation: ...
    async def add_team_member(
        self, team_id: str, *, user_id: str | None = None, email: str | None = None
    ) -> Member | Invitation:
        """Add a user by id (the member), or invite an e-mail address (`{"invited", "email"}`).

        An invitation says nothing about whether the address has an account; its
        account joins the team when it next lists its teams or connects.
        """
        body = {k: v for k, v in (("user_id", user_id), ("email", email)) if v is not None}
        return cast(
            Member | Invitation,
            await self._transport.json(
                "POST", f"/api/v1/teams/{team_id}/members", json=body, idempotent=True
            ),
        )

    async def team_members(self, team_id: str) -> list[Member]:
        """The team's members."""
        page = await self._transport.json("GET", f"/api/v1/teams/{team_id}/members")
        return cast(list[Member], page["members"])
