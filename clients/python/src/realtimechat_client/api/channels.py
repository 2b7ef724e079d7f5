"""Channels: create, list, rename, members, direct messages, read markers."""

from __future__ import annotations

from typing import cast

from realtimechat_client.models import Channel, ChannelView, Member, ReadMarker
from realtimechat_client.transport import Transport

__all__ = ["ChannelsAPI"]


class ChannelsAPI:
    _transport: Transport

    async def create_channel(self, team_id: str, name: str, *, private: bool = False) -> Channel:
        """A new channel of the team, with you as its first member."""
        return cast(
            Channel,
            await self._transport.json(
                "POST",
                f"/api/v1/teams/{team_id}/channels",
                json={"name": name, "private": private},
                idempotent=False,
            ),
        )

    async def team_channels(self, team_id: str) -> list[ChannelView]:
        """The team's channels you can see."""
        page = await self._transport.json("GET", f"/api/v1/teams/{team_id}/channels")
        return cast(list[ChannelView], page["channels"])

    async def my_channels(self) -> list[ChannelView]:
        """Every channel (DMs included) you are a member of, with `unread_count`."""
        page = await self._transport.json("GET", "/api/v1/channels")
        return cast(list[ChannelView], page["channels"])

    async def get_channel(self, channel_id: str) -> ChannelView:
        """One channel, with its `last_seq` and `epoch`."""
        return cast(
            ChannelView, await self._transport.json("GET", f"/api/v1/channels/{channel_id}")
        )

    async def rename_channel(self, channel_id: str, name: str) -> Channel:
        """Rename; not retried after a broken connection."""
        return cast(
            Channel,
            await self._transport.json(
                "PATCH", f"/api/v1/channels/{channel_id}", json={"name": name}, idempotent=False
            ),
        )

    async def channel_members(self, channel_id: str) -> list[Member]:
        """The channel's members."""
        page = await self._transport.json("GET", f"/api/v1/channels/{channel_id}/members")
        return cast(list[Member], page["members"])

    async def add_channel_member(self, channel_id: str, user_id: str) -> Member:
        """Add someone (or join a public channel yourself, with your own id)."""
        return cast(
            Member,
            await self._transport.json(
                "POST",
                f"/api/v1/channels/{channel_id}/members",
                json={"user_id": user_id},
                idempotent=True,  # 200 when already a member
            ),
        )

    async def remove_channel_member(self, channel_id: str, user_id: str) -> None:
        """Leave (your own id) or remove someone; not retried after a broken connection."""
        await self._transport.json(
            "DELETE", f"/api/v1/channels/{channel_id}/members/{user_id}", idempotent=False
        )

    async def open_dm(self, user_id: str) -> ChannelView:
        """The direct-message channel with `user_id` (the same one every time)."""
        return cast(
            ChannelView,
            await self._transport.json(
                "POST", "/api/v1/dms", json={"user_id": user_id}, idempotent=True
            ),
        )

    async def mark_read(self, channel_id: str, seq: int) -> ReadMarker:
        """Move your read marker in the channel to `seq`."""
        return cast(
            ReadMarker,
            await self._transport.json(
                "POST", f"/api/v1/channels/{channel_id}/read", json={"seq": seq}, idempotent=True
            ),
        )
