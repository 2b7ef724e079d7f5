"""Messages: the send path's inserts, edits, tombstones and history."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import Event, Message
from realtimechat.domain.notifications import PlannedJob
from realtimechat.storage import postgres
from realtimechat.storage.events import Appended, insert_event
from realtimechat.storage.notifications import insert_jobs, job_row
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import events, messages

_MESSAGE_BY_CLIENT_ID = Prepared(
    sa.select(messages).where(
        messages.c.sender_id == sa.bindparam("sender_id"),
        messages.c.client_msg_id == sa.bindparam("client_msg_id"),
    )
)
_INSERT_MESSAGE = Prepared(messages.insert())


def message_from_row(row: Any) -> Message:
    return Message(
        row.id,
        row.channel_id,
        row.seq,
        row.sender_id,
        row.client_msg_id,
        row.body,
        orjson.loads(row.attachments),
        row.version,
        row.created_at,
        row.edited_at,
        row.deleted_at,
    )


def _message_params(msg: Message, request_hash: str) -> dict[str, Any]:
    return {
        "id": msg.id,
        "channel_id": msg.channel_id,
        "seq": msg.seq,
        "sender_id": msg.sender_id,
        "client_msg_id": msg.client_msg_id,
        "request_hash": request_hash,
        "body": msg.body,
        "attachments": orjson.dumps(msg.attachments).decode(),
        "version": msg.version,
        "created_at": msg.created_at,
    }


class SqlMessages:
    """The messages table (and a new message's event and jobs)."""

    def __init__(self, conn: Connection, appended: Appended) -> None:
        self._conn = conn
        self._appended = appended

    def get(self, message_id: str) -> Message | None:
        row = self._conn.execute(sa.select(messages).where(messages.c.id == message_id)).first()
        return message_from_row(row) if row else None

    def by_client_id(self, sender_id: str, client_msg_id: str) -> tuple[Message, str] | None:
        row = _MESSAGE_BY_CLIENT_ID.first(
            self._conn, {"sender_id": sender_id, "client_msg_id": client_msg_id}
        )
        return (message_from_row(row), row.request_hash) if row else None

    def add(self, msg: Message, request_hash: str, event: Event, jobs: list[PlannedJob]) -> None:
        conn = self._conn
        self._appended.check_writable()
        if not postgres.is_postgres(conn):
            _INSERT_MESSAGE.execute(
                conn, {**_message_params(msg, request_hash), "edited_at": None, "deleted_at": None}
            )
            insert_event(conn, event, msg.id)
            insert_jobs(conn, msg.channel_id, msg.seq, jobs, msg.created_at)
            self._appended.add(event)
            return
        # One round trip, outbox row included when the transaction needs one.
        outbox = self._appended.outbox
        postgres.INSERT_SENT.execute(
            conn,
            {
                **_message_params(msg, request_hash),
                "type": event.type,
                "payload": event.data.decode(),
                "outbox": outbox,
                "jobs": orjson.dumps([job_row(j) for j in jobs]).decode(),
            },
        )
        self._appended.add(event, has_outbox_row=outbox)

    def update(self, msg: Message) -> None:
        self._conn.execute(
            messages.update()
            .where(messages.c.id == msg.id)
            .values(
                body=msg.body,
                attachments=orjson.dumps(msg.attachments).decode(),
                version=msg.version,
                edited_at=msg.edited_at,
                deleted_at=msg.deleted_at,
            )
        )

    def history(self, channel_id: str, before_seq: int | None, limit: int) -> list[Message]:
        q = sa.select(messages).where(messages.c.channel_id == channel_id)
        if before_seq is not None:
            q = q.where(messages.c.seq < before_seq)
        rows = self._conn.execute(q.order_by(messages.c.seq.desc()).limit(limit))
        return [message_from_row(r) for r in rows]

    def scrub_events(self, message_id: str, payload: bytes) -> None:
        self._conn.execute(
            events.update()
            .where(events.c.message_id == message_id)
            .values(payload=payload.decode())
        )
