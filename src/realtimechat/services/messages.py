"""Sending, editing, deleting and reading messages and channel events."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import orjson

from realtimechat.domain.errors import (
    AlreadyExists,
    Forbidden,
    IdempotencyMismatch,
    MessageDeleted,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from realtimechat.domain.models import Event, Message
from realtimechat.domain.notifications import PlannedJob, Timing, mentions, plan, reach
from realtimechat.domain.records import SendSlot
from realtimechat.ids import new_id, now_ms
from realtimechat.services.channels import ADMIN_ROLES, member_channel, visible_channel
from realtimechat.services.files import resolve_attachments
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import LimitSettings, NotifySettings

MAX_ATTACHMENTS = 10


def request_hash(channel_id: str, body: str, attachments: list[str]) -> str:
    """Fingerprint of a send request, to refuse a reused client_msg_id with another body."""
    raw = orjson.dumps([channel_id, body, attachments], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


def tombstone(msg: Message, at: int) -> Message:
    """The message as it shows once deleted: no body, no attachments."""
    return replace(msg, body="", attachments=[], deleted_at=at, version=msg.version + 1)


def _find(tx: Tx, message_id: str, user_id: str) -> Message:
    """The message if its channel is visible to the user.

    A message in a channel the user cannot see is as unknown as one that does not
    exist: same error, same words.
    """
    msg = tx.messages.get(message_id)
    if msg is None:
        raise NotFound("message not found")
    try:
        visible_channel(tx, msg.channel_id, user_id)
    except NotFound:
        raise NotFound("message not found") from None
    return msg


class MessageService:
    """Messages: idempotent send, versioned edit and delete, history, event pages."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        limits: LimitSettings,
        notify: NotifySettings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._uow = uow
        self._limits = limits
        self._clock = clock
        self._timing = Timing(
            small_channel_max=notify.small_channel_max,
            small_channel_push_delay_ms=int(notify.small_channel_push_delay_s * 1000),
            email_delay_ms=int(notify.email_delay_s * 1000),
        )

    def _check_body(self, body: str, attachments: list[str]) -> None:
        # The edge validated the input's shape once (the REST body model or the frame's
        # protocol model); what is left are this server's rules.
        if len(body) > self._limits.max_body_chars:
            raise ValidationFailed(
                f"body is longer than {self._limits.max_body_chars} characters", field="body"
            )
        if not body.strip() and not attachments:
            raise ValidationFailed("body must not be empty", field="body")
        if len(attachments) > MAX_ATTACHMENTS:
            raise ValidationFailed(f"at most {MAX_ATTACHMENTS} attachments", field="attachments")

    async def send(
        self,
        user_id: str,
        channel_id: str,
        body: str,
        client_msg_id: str,
        attachments: list[str] | None = None,
    ) -> tuple[Message, bool]:
        """Send once per (sender, client_msg_id); (message, created)."""
        attachments = attachments or []
        self._check_body(body, attachments)
        fingerprint = request_hash(channel_id, body, attachments)

        def work(tx: Tx) -> tuple[Message, bool]:
            slot = tx.channels.next_seq_for_new_send(
                channel_id, user_id, client_msg_id, self._timing.small_channel_max
            )
            if slot is None:  # a retry, or not a member: find out which (rare, so slower)
                found = tx.messages.by_client_id(user_id, client_msg_id)
                if found is not None:
                    msg, stored = found
                    if stored != fingerprint:
                        raise IdempotencyMismatch()
                    return msg, False
                channel, _ = member_channel(tx, channel_id, user_id)
                slot = SendSlot(
                    tx.channels.next_seq(channel_id),
                    channel.kind,
                    tx.channels.member_count(channel_id),
                )
            shared = []
            if attachments:
                channel, _ = member_channel(tx, channel_id, user_id)
                shared = resolve_attachments(tx, user_id, channel, attachments)
            at = self._clock()
            msg = Message(
                new_id(),
                channel_id,
                slot.seq,
                user_id,
                client_msg_id,
                body,
                [f.attachment() for f in shared],
                1,
                at,
                None,
                None,
            )
            ev = Event(channel_id, slot.seq, "message.created", orjson.dumps(msg.to_json()), at)
            jobs = self._jobs(tx, msg, slot)
            tx.messages.add(msg, fingerprint, ev, jobs)
            if shared:
                tx.files.share(msg.id, channel_id, [f.id for f in shared])
            return msg, True

        try:
            return await self._uow.write(work)
        except AlreadyExists:
            # Two tries of one send raced past the lookup in parallel transactions (not
            # on SQLite's single writer, but on a pooled database): the other one won.
            return await self._uow.write(work)

    def _jobs(self, tx: Tx, msg: Message, slot: SendSlot) -> list[PlannedJob]:
        """The message's notification jobs, to be written in its own transaction."""
        who = reach(slot.kind, slot.members, msg.body, self._timing.small_channel_max)
        if who is None:
            return []
        recipients = slot.recipients
        if who == "mention" or recipients is None:
            keys = mentions(msg.body) if who == "mention" else None
            recipients = tx.notifications.recipients(msg.channel_id, msg.sender_id, keys)
        return plan(who, msg.body, recipients, self._timing, msg.created_at)

    async def get(self, user_id: str, message_id: str) -> Message:
        return await self._uow.read(lambda tx: _find(tx, message_id, user_id))

    async def edit(self, user_id: str, message_id: str, body: str, if_match: int) -> Message:
        """Change the body of your own message if it is still at version `if_match`."""
        self._check_body(body, [])

        def work(tx: Tx) -> Message:
            msg = _find(tx, message_id, user_id)
            member_channel(tx, msg.channel_id, user_id)
            if msg.sender_id != user_id:
                raise Forbidden("only the author edits a message")
            if msg.deleted_at is not None:
                raise MessageDeleted()
            if msg.version != if_match:
                raise PreconditionFailed(current_version=msg.version)
            at = self._clock()
            edited = replace(msg, body=body, version=msg.version + 1, edited_at=at)
            tx.messages.update(edited)
            tx.events.append(msg.channel_id, "message.updated", edited.to_json(), message_id=msg.id)
            return edited

        return await self._uow.write(work)

    async def delete(self, user_id: str, message_id: str, if_match: int) -> Message:
        """Delete a message (its author or a channel admin); answers the tombstone."""

        def work(tx: Tx) -> Message:
            msg = _find(tx, message_id, user_id)
            _, role = member_channel(tx, msg.channel_id, user_id)
            if msg.sender_id != user_id and role not in ADMIN_ROLES:
                raise Forbidden("only the author or a channel admin deletes a message")
            if msg.version != if_match:
                raise PreconditionFailed(current_version=msg.version)
            if msg.deleted_at is not None:
                return msg  # deleting twice changes nothing
            gone = tombstone(msg, self._clock())
            tx.messages.update(gone)
            tx.files.unshare_message(msg.id)
            data = orjson.dumps(gone.to_json())
            # Deleted text must not survive in the event log either.
            tx.messages.scrub_events(msg.id, data)
            tx.events.append(msg.channel_id, "message.deleted", gone.to_json(), message_id=msg.id)
            return gone

        return await self._uow.write(work)

    async def history(
        self, user_id: str, channel_id: str, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Messages newest first, before `before_seq`; (page, has_more)."""
        limit = self._page(limit)

        def work(tx: Tx) -> tuple[list[Message], bool]:
            visible_channel(tx, channel_id, user_id)
            rows = tx.messages.history(channel_id, before_seq, limit + 1)
            return rows[:limit], len(rows) > limit

        return await self._uow.read(work)

    async def events(
        self, user_id: str, channel_id: str, after_seq: int, limit: int
    ) -> tuple[list[Event], bool]:
        """Events in seq order after `after_seq`; (page, has_more)."""
        limit = self._page(limit)

        def work(tx: Tx) -> tuple[list[Event], bool]:
            visible_channel(tx, channel_id, user_id)
            rows = tx.events.after(channel_id, after_seq, limit + 1)
            return rows[:limit], len(rows) > limit

        return await self._uow.read(work)

    async def replay(self, channel_id: str, after_seq: int, limit: int) -> list[Event]:
        """Stored events for a live session that is already known to be a member."""
        return await self._uow.read(lambda tx: tx.events.after(channel_id, after_seq, limit))

    def _page(self, limit: int) -> int:
        if not 1 <= limit <= self._limits.page_max:
            raise ValidationFailed(f"limit must be 1 to {self._limits.page_max}", field="limit")
        return limit
