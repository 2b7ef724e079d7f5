"""Messages and the channel's event log: send, edit, delete, history, events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

from realtimechat_client.models import Event, EventPage, HistoryPage, Message
from realtimechat_client.transport import Transport

__all__ = ["MessagesAPI", "new_client_msg_id"]


def new_client_msg_id() -> str:
    """A fresh, unique client_msg_id."""
    return uuid.uuid4().hex


class MessagesAPI:
    _transport: Transport

    async def send_message(
        self,
        channel_id: str,
        body: str,
        client_msg_id: str | None = None,
        *,
        attachments: list[Any] | None = None,
    ) -> Message:
        """Send over REST; retried with the same client_msg_id, so never sent twice."""
        payload: dict[str, Any] = {
            "channel_id": channel_id,
            "body": body,
            "client_msg_id": client_msg_id or new_client_msg_id(),
        }
        if attachments:
            payload["attachments"] = attachments
        return cast(
            Message,
            await self._transport.json("POST", "/api/v1/messages", json=payload, idempotent=True),
        )

    async def get_message(self, message_id: str) -> Message:
        """The message; its `version` is what edit/delete take as `if_match`."""
        return cast(Message, await self._transport.json("GET", f"/api/v1/messages/{message_id}"))

    async def edit_message(self, message_id: str, body: str, if_match: int | str) -> Message:
        """Edit; `if_match` is the version you read (an int) or its ETag. Stale: 412."""
        return cast(
            Message,
            await self._transport.json(
                "PUT",
                f"/api/v1/messages/{message_id}",
                json={"body": body},
                headers={"If-Match": _etag(if_match)},
                idempotent=False,
            ),
        )

    async def delete_message(self, message_id: str, if_match: int | str) -> Message:
        """Delete; answers the tombstone. `if_match` as for `edit_message`."""
        return cast(
            Message,
            await self._transport.json(
                "DELETE",
                f"/api/v1/messages/{message_id}",
                headers={"If-Match": _etag(if_match)},
                idempotent=False,
            ),
        )

    async def history(
        self, channel_id: str, *, before_seq: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        """One page `{messages, has_more}`, newest first."""
        params = {k: v for k, v in (("before_seq", before_seq), ("limit", limit)) if v is not None}
        return cast(
            HistoryPage,
            await self._transport.json(
                "GET", f"/api/v1/channels/{channel_id}/messages", params=params
            ),
        )

    async def events(
        self, channel_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> EventPage:
        """One page `{events, has_more}` in seq order after `after_seq`."""
        params: dict[str, int] = {"after_seq": after_seq}
        if limit is not None:
            params["limit"] = limit
        return cast(
            EventPage,
            await self._transport.json(
                "GET", f"/api/v1/channels/{channel_id}/events", params=params
            ),
        )

    async def iter_events(
        self, channel_id: str, *, after_seq: int = 0, page_size: int | None = None
    ) -> AsyncIterator[Event]:
        """Every event after `after_seq`, paging until the end."""
        limit = page_size or self._transport.options.page_size
        while True:
            page = await self.events(channel_id, after_seq=after_seq, limit=limit)
            for ev in page["events"]:
                after_seq = ev["seq"]
                yield ev
            if not page["has_more"] or not page["events"]:
                return


def _etag(if_match: int | str) -> str:
    return f'"{if_match}"' if isinstance(if_match, int) else if_match
