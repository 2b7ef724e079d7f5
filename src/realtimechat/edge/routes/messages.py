"""Send, read, edit and delete messages; history and event pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from realtimechat.domain.errors import PreconditionFailed, PreconditionRequired, ValidationFailed
from realtimechat.domain.models import Message
from realtimechat.edge import commands, frames
from realtimechat.edge.auth import AppDeps, CurrentUser
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import Count, EditIn, Id, Line, SendIn

router = APIRouter(prefix="/api/v1", tags=["messages"])


def parse_if_match(value: str | None) -> int:
    """The version named by an If-Match header: `"3"`, `W/"3"` or `3`."""
    if value is None:
        raise PreconditionRequired("send If-Match with the message's ETag")
    tag = value.strip()
    tag = tag.removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailed(f"If-Match {value!r} names no version of this message")
    return int(tag)


def _message(msg: Message, status: int = 200) -> Response:
    return json(msg.to_json(), status, {"ETag": msg.etag})


@router.post("/messages", status_code=201)
async def send_message(
    body: SendIn,
    user: CurrentUser,
    deps: AppDeps,
    idempotency_key: Annotated[Line | None, Header(max_length=100)] = None,
) -> Response:
    """Send a message; a retry with the same client_msg_id (or Idempotency-Key) answers 200."""
    client_msg_id = body.client_msg_id or idempotency_key
    if client_msg_id is None:
        raise ValidationFailed(
            "give client_msg_id (or an Idempotency-Key header) so a retry cannot send twice",
            field="client_msg_id",
        )
    if body.client_msg_id and idempotency_key and body.client_msg_id != idempotency_key:
        raise ValidationFailed("client_msg_id and Idempotency-Key differ", field="client_msg_id")
    command = commands.SendMessage(
        body.channel_id, body.body, client_msg_id, tuple(body.attachments)
    )
    sent = await commands.run(command, deps, actor=user.user_id, transport="rest")
    return _message(sent.message, 201 if sent.created else 200)


@router.get("/messages/{message_id}")
async def get_message(
    message_id: Id,
    user: CurrentUser,
    deps: AppDeps,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    msg = await deps.messages.get(user.user_id, message_id)
    if if_none_match is not None and if_none_match.strip() == msg.etag:
        return Response(status_code=304, headers={"ETag": msg.etag})
    return _message(msg)


@router.put("/messages/{message_id}")
async def edit_message(
    message_id: Id,
    body: EditIn,
    user: CurrentUser,
    deps: AppDeps,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Edit your message; If-Match must carry its current ETag."""
    version = parse_if_match(if_match)
    return _message(await deps.messages.edit(user.user_id, message_id, body.body, version))


@router.delete("/messages/{message_id}")
async def delete_message(
    message_id: Id,
    user: CurrentUser,
    deps: AppDeps,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Delete a message (author or channel admin); answers the tombstone."""
    version = parse_if_match(if_match)
    return _message(await deps.messages.delete(user.user_id, message_id, version))


@router.get("/channels/{channel_id}/messages")
async def history(
    channel_id: Id,
    user: CurrentUser,
    deps: AppDeps,
    before_seq: Annotated[Count | None, Query(ge=1)] = None,
    limit: Annotated[Count, Query(ge=1)] = 50,
) -> Response:
    """Messages newest first; page back with before_seq = the smallest seq you have."""
    page, has_more = await deps.messages.history(user.user_id, channel_id, before_seq, limit)
    return json({"messages": [m.to_json() for m in page], "has_more": has_more})


@router.get("/channels/{channel_id}/events")
async def events(
    channel_id: Id,
    user: CurrentUser,
    deps: AppDeps,
    after_seq: Annotated[Count, Query(ge=0)] = 0,
    limit: Annotated[Count, Query(ge=1)] = 100,
) -> Response:
    """Events in seq order after after_seq, exactly as the WebSocket delivers them."""
    page, has_more = await deps.messages.events(user.user_id, channel_id, after_seq, limit)
    return json(frames.events_page(page, has_more))
