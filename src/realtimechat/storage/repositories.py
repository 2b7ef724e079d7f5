"""Queries over a Connection, returning domain records. No transaction control here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from realtimechat.domain.models import (
    Channel,
    ChannelKind,
    Event,
    Invitation,
    Member,
    Message,
    Role,
    Team,
    User,
)
from realtimechat.domain.notifications import PlannedJob, Recipient
from realtimechat.storage import notifications as notes
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import (
    channel_members,
    channels,
    events,
    messages,
    outbox,
    team_invitations,
    team_members,
    teams,
    users,
)

# Statements on the send and replay paths are built once (and the send path's
# compiled once and run on the driver, storage/prepared.py) instead of rebuilt per
# call: together they cut the writer's time per send about ten-fold
# (docs/performance.md).
_cm = channel_members.alias("cm")
_tm = team_members.alias("tm")
_CHANNEL_ACCESS = Prepared(
    sa.select(channels, _cm.c.role.label("member_role"), _tm.c.role.label("team_role"))
    .select_from(
        channels.outerjoin(
            _cm,
            sa.and_(_cm.c.channel_id == channels.c.id, _cm.c.user_id == sa.bindparam("user_id")),
        ).outerjoin(
            _tm,
            sa.and_(_tm.c.team_id == channels.c.team_id, _tm.c.user_id == sa.bindparam("user_id")),
        )
    )
    .where(channels.c.id == sa.bindparam("channel_id"))
)
_NEXT_SEQ = Prepared(
    channels.update()
    .where(channels.c.id == sa.bindparam("cid"))
    .values(last_seq=channels.c.last_seq + 1)
    .returning(channels.c.last_seq)
)


def _next_seq_for_new_send(postgres: bool) -> Prepared:
    """The common send in one statement: the seq, if the sender is a member and has not
    sent this client_msg_id yet (else no row, and the caller finds out which).

    Its member count lets the send decide who may be notified without another round
    trip; on PostgreSQL, where each statement is one, it also reads who they are where
    everyone may be told (a DM, a small channel).
    """
    joined: list[Any] = []
    if postgres:
        # Counted once (UPDATE … FROM) for RETURNING and the CASE; SQLite's RETURNING
        # cannot see a joined table, and has no CASE to share it with.
        m = (
            sa.select(sa.func.count().label("n"))
            .where(channel_members.c.channel_id == sa.bindparam("cid"))
            .subquery("m")
        )
        members: Any = m.c.n
        joined.append(m.c.n > 0)  # brings it into FROM; membership is checked below
    else:
        members = (
            sa.select(sa.func.count())
            .where(channel_members.c.channel_id == channels.c.id)
            .scalar_subquery()
        )
    columns: list[Any] = [channels.c.last_seq, channels.c.kind, members.label("members")]
    if postgres:
        everyone = sa.or_(channels.c.kind == "dm", members <= sa.bindparam("small_max") + 1)
        columns.append(
            sa.case((everyone, notes.recipients_json()), else_=sa.null()).label("recipients")
        )
    return Prepared(
        channels.update()
        .where(
            channels.c.id == sa.bindparam("cid"),
            *joined,
            sa.exists().where(
                channel_members.c.channel_id == sa.bindparam("cid"),
                channel_members.c.user_id == sa.bindparam("uid"),
            ),
            ~sa.exists().where(
                messages.c.sender_id == sa.bindparam("uid"),
                messages.c.client_msg_id == sa.bindparam("cmid"),
            ),
        )
        .values(last_seq=channels.c.last_seq + 1)
        .returning(*columns)
    )


_NEXT_SEQ_FOR_NEW_SEND = _next_seq_for_new_send(postgres=False)
_NEXT_SEQ_FOR_NEW_SEND_PG = _next_seq_for_new_send(postgres=True)
_MESSAGE_BY_CLIENT_ID = Prepared(
    sa.select(messages).where(
        messages.c.sender_id == sa.bindparam("sender_id"),
        messages.c.client_msg_id == sa.bindparam("client_msg_id"),
    )
)
_INSERT_MESSAGE = Prepared(messages.insert())
_INSERT_EVENT = Prepared(events.insert())
_INSERT_OUTBOX = Prepared(outbox.insert())
# Set in a connection's info by the database runner when events need an outbox row.
OUTBOX = "rtc_outbox"
# A sent message, its event, (if wanted) its outbox row and its notification jobs in one
# round trip: on PostgreSQL each statement is one, and they run while the channel's row
# is locked.
_INSERT_SENT_PG = Prepared(
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
_EVENTS_AFTER = (
    sa.select(events.c.seq, events.c.type, events.c.payload, events.c.created_at)
    .where(events.c.channel_id == sa.bindparam("channel_id"), events.c.seq > sa.bindparam("after"))
    .order_by(events.c.seq)
    .limit(sa.bindparam("limit"))
)


# ---- users -----------------------------------------------------------------
def user_from_row(row: Row[Any]) -> User:
    return User(row.id, row.email, row.display_name, row.created_at)


def insert_user(conn: Connection, user: User, password_hash: str) -> None:
    conn.execute(
        users.insert().values(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            password_hash=password_hash,
            created_at=user.created_at,
        )
    )


def user_by_id(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return user_from_row(row) if row else None


def user_with_hash_by_email(conn: Connection, email: str) -> tuple[User, str] | None:
    row = conn.execute(sa.select(users).where(users.c.email == email)).first()
    return (user_from_row(row), row.password_hash) if row else None


# ---- teams -----------------------------------------------------------------
def insert_team(conn: Connection, team: Team) -> None:
    conn.execute(
        teams.insert().values(
            id=team.id, name=team.name, created_by=team.created_by, created_at=team.created_at
        )
    )


def team_role(conn: Connection, team_id: str, user_id: str) -> Role | None:
    role = conn.execute(
        sa.select(team_members.c.role).where(
            team_members.c.team_id == team_id, team_members.c.user_id == user_id
        )
    ).scalar()
    return cast(Role | None, role)


def add_team_member(conn: Connection, team_id: str, user_id: str, role: Role, at: int) -> None:
    conn.execute(
        team_members.insert().values(team_id=team_id, user_id=user_id, role=role, joined_at=at)
    )


def _insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that can say ON CONFLICT, in the connection's dialect."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def add_team_member_if_absent(
    conn: Connection, team_id: str, user_id: str, role: Role, at: int
) -> bool:
    """Add the membership unless it exists (another node may add it at the same time)."""
    result = conn.execute(
        _insert(conn, team_members)
        .values(team_id=team_id, user_id=user_id, role=role, joined_at=at)
        .on_conflict_do_nothing(index_elements=["team_id", "user_id"])
    )
    return bool(result.rowcount)


def team_by_id(conn: Connection, team_id: str) -> Team | None:
    row = conn.execute(sa.select(teams).where(teams.c.id == team_id)).first()
    return Team(row.id, row.name, row.created_by, row.created_at) if row else None


def teams_of_user(conn: Connection, user_id: str) -> list[Team]:
    rows = conn.execute(
        sa.select(teams, team_members.c.role)
        .join(team_members, team_members.c.team_id == teams.c.id)
        .where(team_members.c.user_id == user_id)
        .order_by(teams.c.created_at)
    )
    return [Team(r.id, r.name, r.created_by, r.created_at, cast(Role, r.role)) for r in rows]


def team_members_of(conn: Connection, team_id: str) -> list[Member]:
    rows = conn.execute(
        sa.select(team_members, users.c.display_name)
        .join(users, users.c.id == team_members.c.user_id)
        .where(team_members.c.team_id == team_id)
        .order_by(team_members.c.joined_at)
    )
    return [Member(r.user_id, r.display_name, cast(Role, r.role), r.joined_at) for r in rows]


def users_share_team(conn: Connection, a: str, b: str) -> bool:
    tm2 = team_members.alias("tm2")
    row = conn.execute(
        sa.select(team_members.c.team_id)
        .join(tm2, tm2.c.team_id == team_members.c.team_id)
        .where(team_members.c.user_id == a, tm2.c.user_id == b)
        .limit(1)
    ).first()
    return row is not None


# ---- team invitations ------------------------------------------------------
def prune_team_invitations(conn: Connection, team_id: str, now: int) -> None:
    """Forget the team's expired invitations."""
    conn.execute(
        team_invitations.delete().where(
            team_invitations.c.team_id == team_id, team_invitations.c.expires_at <= now
        )
    )


def pending_invitations_besides(conn: Connection, team_id: str, email: str, now: int) -> int:
    """How many unexpired invitations the team has to addresses other than `email`."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                team_invitations.c.team_id == team_id,
                team_invitations.c.email != email,
                team_invitations.c.expires_at > now,
            )
        ).scalar_one()
    )


def put_team_invitation(conn: Connection, inv: Invitation) -> None:
    """Insert the invitation, or refresh the team's one to that address."""
    stmt = _insert(conn, team_invitations).values(
        team_id=inv.team_id,
        email=inv.email,
        invited_by=inv.invited_by,
        created_at=inv.created_at,
        expires_at=inv.expires_at,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["team_id", "email"],
            set_={
                "invited_by": stmt.excluded.invited_by,
                "created_at": stmt.excluded.created_at,
                "expires_at": stmt.excluded.expires_at,
            },
        )
    )


def invitations_of_user(conn: Connection, user_id: str, now: int) -> list[Invitation]:
    """The unexpired invitations to the user's own e-mail address, oldest first."""
    rows = conn.execute(
        sa.select(team_invitations)
        .join(users, users.c.email == team_invitations.c.email)
        .where(users.c.id == user_id, team_invitations.c.expires_at > now)
        .order_by(team_invitations.c.created_at)
    )
    return [Invitation(r.team_id, r.email, r.invited_by, r.created_at, r.expires_at) for r in rows]


def delete_team_invitation(conn: Connection, team_id: str, email: str) -> None:
    conn.execute(
        team_invitations.delete().where(
            team_invitations.c.team_id == team_id, team_invitations.c.email == email
        )
    )


# ---- channels --------------------------------------------------------------
def channel_from_row(row: Any) -> Channel:
    return Channel(
        row.id,
        row.team_id,
        cast(ChannelKind, row.kind),
        row.name,
        row.last_seq,
        row.epoch,
        row.created_by,
        row.created_at,
    )


def insert_channel(conn: Connection, channel: Channel, dm_key: str | None = None) -> None:
    conn.execute(
        channels.insert().values(
            id=channel.id,
            team_id=channel.team_id,
            kind=channel.kind,
            name=channel.name,
            last_seq=channel.last_seq,
            epoch=channel.epoch,
            created_by=channel.created_by,
            created_at=channel.created_at,
            dm_key=dm_key,
        )
    )


def channel_by_dm_key(conn: Connection, dm_key: str) -> Channel | None:
    row = conn.execute(sa.select(channels).where(channels.c.dm_key == dm_key)).first()
    return channel_from_row(row) if row else None


def rename_channel(conn: Connection, channel_id: str, name: str) -> None:
    conn.execute(channels.update().where(channels.c.id == channel_id).values(name=name))


def next_seq(conn: Connection, channel_id: str) -> int:
    """Allocate the channel's next seq; the row lock orders writers per channel."""
    return int(_NEXT_SEQ.scalar(conn, {"cid": channel_id}))


def last_seqs(conn: Connection, channel_ids: list[str]) -> dict[str, int]:
    """Each channel's last allocated seq (missing ids are left out)."""
    rows = conn.execute(
        sa.select(channels.c.id, channels.c.last_seq).where(channels.c.id.in_(channel_ids))
    )
    return {row.id: int(row.last_seq) for row in rows}


@dataclass(frozen=True)
class SendSlot:
    """A send's seq, with what deciding its notifications needs."""

    seq: int
    kind: str
    members: int
    # The other members with their settings, when read with the seq (see below).
    recipients: list[Recipient] | None = None


def next_seq_for_new_send(
    conn: Connection, channel_id: str, user_id: str, client_msg_id: str, small_max: int
) -> SendSlot | None:
    """Allocate a seq for a first send by a member, in one round trip; else None.

    On PostgreSQL the same statement reads the recipients of a DM or of a channel
    with at most `small_max` other members.
    """
    params = {"cid": channel_id, "uid": user_id, "cmid": client_msg_id}
    if conn.dialect.name != "postgresql":
        row = _NEXT_SEQ_FOR_NEW_SEND.first(conn, params)
    else:
        row = _NEXT_SEQ_FOR_NEW_SEND_PG.first(
            conn, {**params, "sender": user_id, "small_max": small_max}
        )
    if row is None:
        return None
    recipients = getattr(row, "recipients", None)
    return SendSlot(
        int(row.last_seq),
        str(row.kind),
        int(row.members),
        None if recipients is None else notes.recipients_from_json(recipients),
    )


def member_count(conn: Connection, channel_id: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(channel_members.c.channel_id == channel_id)
        ).scalar_one()
    )


def joins_since(conn: Connection, user_ids: list[str], since: int) -> list[Event]:
    """The events that added any of `user_ids` to a channel at or after `since` (ms)."""
    members = conn.execute(
        sa.select(channel_members.c.channel_id, channel_members.c.joined_at).where(
            channel_members.c.user_id.in_(user_ids), channel_members.c.joined_at >= since
        )
    ).all()
    wanted = set(user_ids)
    found: dict[tuple[str, int], Event] = {}
    for channel_id, joined_at in members:
        rows = conn.execute(
            sa.select(events.c.seq, events.c.type, events.c.payload, events.c.created_at).where(
                events.c.channel_id == channel_id,
                events.c.type.in_(("member.joined", "channel.created")),
                events.c.created_at >= joined_at - 1000,  # written in the same transaction
            )
        )
        for r in rows:
            ev = Event.stored(channel_id, r.seq, r.type, r.payload.encode(), r.created_at)
            if wanted.intersection(ev.joined):
                found[(channel_id, ev.seq)] = ev
    return [found[k] for k in sorted(found)]


def channel_access(
    conn: Connection, channel_id: str, user_id: str
) -> tuple[Channel, Role | None, Role | None] | None:
    """The channel with the user's channel role and team role (None where not a member)."""
    row = _CHANNEL_ACCESS.first(conn, {"channel_id": channel_id, "user_id": user_id})
    if row is None:
        return None
    return (
        channel_from_row(row),
        cast(Role | None, row.member_role),
        cast(Role | None, row.team_role),
    )


def channel_membership(conn: Connection, channel_id: str, user_id: str) -> tuple[Role, int] | None:
    row = conn.execute(
        sa.select(channel_members.c.role, channel_members.c.read_seq).where(
            channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id
        )
    ).first()
    return (cast(Role, row.role), int(row.read_seq)) if row else None


def add_channel_member(
    conn: Connection, channel_id: str, user_id: str, role: Role, at: int, read_seq: int = 0
) -> None:
    conn.execute(
        channel_members.insert().values(
            channel_id=channel_id, user_id=user_id, role=role, read_seq=read_seq, joined_at=at
        )
    )


def remove_channel_member(conn: Connection, channel_id: str, user_id: str) -> None:
    conn.execute(
        channel_members.delete().where(
            channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id
        )
    )


def channel_members_of(conn: Connection, channel_id: str) -> list[Member]:
    rows = conn.execute(
        sa.select(channel_members, users.c.display_name)
        .join(users, users.c.id == channel_members.c.user_id)
        .where(channel_members.c.channel_id == channel_id)
        .order_by(channel_members.c.joined_at)
    )
    return [Member(r.user_id, r.display_name, cast(Role, r.role), r.joined_at) for r in rows]


def member_ids(conn: Connection, channel_id: str) -> list[str]:
    return list(
        conn.execute(
            sa.select(channel_members.c.user_id).where(channel_members.c.channel_id == channel_id)
        ).scalars()
    )


def set_read_seq(conn: Connection, channel_id: str, user_id: str, seq: int) -> int:
    """Move the read marker forward (never back); return the resulting marker."""
    conn.execute(
        channel_members.update()
        .where(
            channel_members.c.channel_id == channel_id,
            channel_members.c.user_id == user_id,
            channel_members.c.read_seq < seq,
        )
        .values(read_seq=seq)
    )
    membership = channel_membership(conn, channel_id, user_id)
    return membership[1] if membership else 0


def channels_of_user(conn: Connection, user_id: str) -> list[tuple[Channel, Role, int]]:
    """Every channel the user is a member of, with role and read marker."""
    rows = conn.execute(
        sa.select(channels, channel_members.c.role, channel_members.c.read_seq)
        .join(channel_members, channel_members.c.channel_id == channels.c.id)
        .where(channel_members.c.user_id == user_id)
        .order_by(channels.c.created_at)
    )
    return [(channel_from_row(r), cast(Role, r.role), int(r.read_seq)) for r in rows]


def team_channels_for(conn: Connection, team_id: str, user_id: str) -> list[tuple[Channel, Any]]:
    """Public channels of the team and the private ones the user is in, with membership."""
    cm = channel_members
    rows = conn.execute(
        sa.select(channels, cm.c.role, cm.c.read_seq)
        .outerjoin(cm, sa.and_(cm.c.channel_id == channels.c.id, cm.c.user_id == user_id))
        .where(
            channels.c.team_id == team_id,
            sa.or_(channels.c.kind == "public", cm.c.user_id.is_not(None)),
        )
        .order_by(channels.c.created_at)
    )
    return [(channel_from_row(r), r) for r in rows]


def unread_count(conn: Connection, channel_id: str, user_id: str, read_seq: int) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(
                messages.c.channel_id == channel_id,
                messages.c.seq > read_seq,
                messages.c.sender_id != user_id,
                messages.c.deleted_at.is_(None),
            )
        ).scalar_one()
    )


def unread_counts(conn: Connection, user_id: str) -> dict[str, int]:
    """Unread messages (by others, not deleted) per channel the user is a member of."""
    cm = channel_members
    rows = conn.execute(
        sa.select(cm.c.channel_id, sa.func.count(messages.c.id))
        .select_from(
            cm.join(
                messages,
                sa.and_(
                    messages.c.channel_id == cm.c.channel_id,
                    messages.c.seq > cm.c.read_seq,
                    messages.c.sender_id != user_id,
                    messages.c.deleted_at.is_(None),
                ),
            )
        )
        .where(cm.c.user_id == user_id)
        .group_by(cm.c.channel_id)
    )
    return {channel_id: int(n) for channel_id, n in rows}


# ---- messages and events ---------------------------------------------------
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


def message_by_id(conn: Connection, message_id: str) -> Message | None:
    row = conn.execute(sa.select(messages).where(messages.c.id == message_id)).first()
    return message_from_row(row) if row else None


def message_by_client_id(
    conn: Connection, sender_id: str, client_msg_id: str
) -> tuple[Message, str] | None:
    row = _MESSAGE_BY_CLIENT_ID.first(
        conn, {"sender_id": sender_id, "client_msg_id": client_msg_id}
    )
    return (message_from_row(row), row.request_hash) if row else None


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


def insert_message(conn: Connection, msg: Message, request_hash: str) -> None:
    _INSERT_MESSAGE.execute(
        conn, {**_message_params(msg, request_hash), "edited_at": None, "deleted_at": None}
    )


def insert_sent_message(
    conn: Connection, msg: Message, request_hash: str, ev: Event, jobs: list[PlannedJob]
) -> None:
    """A new message with its event (and outbox row) and its notification jobs."""
    if conn.dialect.name != "postgresql":
        insert_message(conn, msg, request_hash)
        insert_event(conn, ev, msg.id)
        notes.insert_jobs(conn, msg.channel_id, msg.seq, jobs, msg.created_at)
        return
    _INSERT_SENT_PG.execute(
        conn,
        {
            **_message_params(msg, request_hash),
            "type": ev.type,
            "payload": ev.data.decode(),
            "outbox": bool(conn.info.get(OUTBOX)),
            "jobs": orjson.dumps([notes.job_row(j) for j in jobs]).decode(),
        },
    )


def update_message(conn: Connection, msg: Message) -> None:
    conn.execute(
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


def history(conn: Connection, channel_id: str, before_seq: int | None, limit: int) -> list[Message]:
    q = sa.select(messages).where(messages.c.channel_id == channel_id)
    if before_seq is not None:
        q = q.where(messages.c.seq < before_seq)
    rows = conn.execute(q.order_by(messages.c.seq.desc()).limit(limit))
    return [message_from_row(r) for r in rows]


def insert_event(conn: Connection, ev: Event, message_id: str | None = None) -> None:
    _INSERT_EVENT.execute(
        conn,
        {
            "channel_id": ev.channel_id,
            "seq": ev.seq,
            "type": ev.type,
            "message_id": message_id,
            "payload": ev.data.decode(),
            "created_at": ev.created_at,
        },
    )
    if conn.info.get(OUTBOX):
        _INSERT_OUTBOX.execute(
            conn,
            {
                "channel_id": ev.channel_id,
                "seq": ev.seq,
                "created_at": ev.created_at,
                "claimed_until": 0,
            },
        )


def claim_outbox(
    conn: Connection, *, older_than: int, now: int, until: int, limit: int
) -> list[Event]:
    """Claim up to `limit` unpublished events written before `older_than`, oldest first.

    Rows claimed by another relay (until a time still to come) or locked by one are
    skipped, so several relays share the work; a claim lapses at `until`.
    """
    key = sa.tuple_(outbox.c.channel_id, outbox.c.seq)
    due = (
        sa.select(outbox.c.channel_id, outbox.c.seq)
        .where(outbox.c.created_at < older_than, outbox.c.claimed_until < now)
        .order_by(outbox.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = conn.execute(
        outbox.update()
        .where(key.in_(due))
        .values(claimed_until=until)
        .returning(outbox.c.channel_id, outbox.c.seq)
    ).all()
    if not claimed:
        return []
    rows = conn.execute(
        sa.select(
            events.c.channel_id, events.c.seq, events.c.type, events.c.payload, events.c.created_at
        )
        .where(sa.tuple_(events.c.channel_id, events.c.seq).in_([tuple(r) for r in claimed]))
        .order_by(events.c.channel_id, events.c.seq)  # each channel in seq order
    )
    return [
        Event.stored(r.channel_id, r.seq, r.type, r.payload.encode(), r.created_at) for r in rows
    ]


def delete_outbox(conn: Connection, keys: list[tuple[str, int]]) -> None:
    """Forget outbox rows whose events the bus has."""
    if keys:
        conn.execute(outbox.delete().where(sa.tuple_(outbox.c.channel_id, outbox.c.seq).in_(keys)))


def outbox_lag(conn: Connection, now: int) -> tuple[int, int]:
    """(rows waiting, age in ms of the oldest)."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(outbox.c.created_at))).one()
    return int(row[0]), (now - int(row[1])) if row[1] is not None else 0


def scrub_message_events(conn: Connection, message_id: str, payload: bytes) -> None:
    """Replace the payload of every event of a deleted message by its tombstone."""
    conn.execute(
        events.update().where(events.c.message_id == message_id).values(payload=payload.decode())
    )


def events_after(conn: Connection, channel_id: str, after_seq: int, limit: int) -> list[Event]:
    rows = conn.execute(
        _EVENTS_AFTER, {"channel_id": channel_id, "after": after_seq, "limit": limit}
    )
    return [Event(channel_id, r.seq, r.type, r.payload.encode(), r.created_at) for r in rows]
