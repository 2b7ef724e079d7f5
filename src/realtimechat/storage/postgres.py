"""The SQL only PostgreSQL runs: the one-round-trip send, upserts, JSON aggregation,
SKIP LOCKED. On PostgreSQL each statement is a round trip, and these run while a
channel's row is locked, so the send path packs its statements into two."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from realtimechat.domain.notifications import Recipient
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.recipients import recipient, recipients_query
from realtimechat.storage.tables import channel_members, channels


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def upsert_insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that can say ON CONFLICT, in the connection's dialect."""
    return (postgresql.insert if is_postgres(conn) else sqlite.insert)(table)


def greatest(conn: Connection, a: Any, b: Any) -> Any:
    """The larger of two values (SQLite's two-argument max is PostgreSQL's greatest)."""
    return sa.func.greatest(a, b) if is_postgres(conn) else sa.func.max(a, b)


def skip_locked(conn: Connection, select: sa.Select[Any]) -> sa.Select[Any]:
    """Let several claimers pass over each other's rows (SQLite: one writer, no need)."""
    return select.with_for_update(skip_locked=True) if is_postgres(conn) else select


def _recipients_json() -> sa.ScalarSelect[Any]:
    """The recipients as one JSON array of rows, for a send to read with its seq."""
    r = recipients_query().subquery()
    row = sa.func.json_build_array(
        r.c.user_id, r.c.display_name, r.c.push, r.c.email, r.c.muted, r.c.has_device
    )
    return sa.select(
        sa.func.coalesce(sa.func.json_agg(row), sa.literal_column("'[]'::json"))
    ).scalar_subquery()


def recipients_from_json(rows: list[list[Any]]) -> list[Recipient]:
    """The rows of the send's `recipients` column."""
    return [recipient(row) for row in rows]


def next_seq_for_new_send(allowed: Sequence[sa.ColumnElement[bool]]) -> Prepared:
    """storage/channels.py's send statement under its conditions (`allowed`), with the
    member count computed once (UPDATE … FROM) for RETURNING and the CASE, and the
    recipients of a DM or a small channel read in the same round trip."""
    m = (
        sa.select(sa.func.count().label("n"))
        .where(channel_members.c.channel_id == sa.bindparam("cid"))
        .subquery("m")
    )
    everyone = sa.or_(channels.c.kind == "dm", m.c.n <= sa.bindparam("small_max") + 1)
    return Prepared(
        channels.update()
        .where(
            channels.c.id == sa.bindparam("cid"),
            m.c.n > 0,  # brings it into FROM; membership is checked below
            *allowed,
        )
        .values(last_seq=channels.c.last_seq + 1)
        .returning(
            channels.c.last_seq,
            channels.c.kind,
            m.c.n.label("members"),
            sa.case((everyone, _recipients_json()), else_=sa.null()).label("recipients"),
        )
    )


# A sent message, its event, (if wanted) its outbox row and its notification jobs in
# one round trip.
INSERT_SENT = Prepared(
    sa.text(
        "WITH m AS (INSERT INTO messages (id, channel_id, seq, sender_id, client_msg_id,"
        " request_hash, body, attachments, version, created_at)"
        " VALUES (:id, :channel_id, :seq, :sender_id, :client_msg_id, :request_hash, :body,"
        " :attachments, :version, :created_at)),"
        " e AS (INSERT INTO events (channel_id, seq, type, message_id, payload, created_at)"
        " VALUES (:channel_id, :seq, :type, :id, :payload, :created_at)),"
        " o AS (INSERT INTO outbox (channel_id, seq, created_at, claimed_until)"
        " SELECT :channel_id, :seq, :created_at, 0 WHERE :outbox)"
        " INSERT INTO notification_jobs (id, user_id, channel_id, seq, kind, reason, state,"
        " due_at, attempts, claimed_until, created_at, updated_at)"
        " SELECT j.id, j.user_id, :channel_id, :seq, j.kind, j.reason, 'pending', j.due_at,"
        " 0, 0, :created_at, :created_at"
        " FROM json_to_recordset(CAST(:jobs AS json))"
        " AS j(id text, user_id text, kind text, reason text, due_at bigint)"
    )
)
