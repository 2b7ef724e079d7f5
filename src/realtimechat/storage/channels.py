"""Channels, their members, seq allocation and unread counts."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import Channel, ChannelKind, Member, Role
from realtimechat.domain.records import SendSlot
from realtimechat.storage import postgres
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import channel_members, channels, messages, team_members, users

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
NEXT_SEQ = Prepared(
    channels.update()
    .where(channels.c.id == sa.bindparam("cid"))
    .values(last_seq=channels.c.last_seq + 1)
    .returning(channels.c.last_seq)
)
# The common send in one statement: the seq, if the sender is a member and has not sent
# this client_msg_id yet (else no row, and the caller finds out which). Its member count
# lets the send decide who may be notified without another round trip. SQLite's
# RETURNING cannot see a joined table, so the count is a subquery here;
# storage/postgres.py has PostgreSQL's, which also reads the recipients.
_NEW_SEND_ALLOWED = (
    sa.exists().where(
        channel_members.c.channel_id == sa.bindparam("cid"),
        channel_members.c.user_id == sa.bindparam("uid"),
    ),
    ~sa.exists().where(
        messages.c.sender_id == sa.bindparam("uid"),
        messages.c.client_msg_id == sa.bindparam("cmid"),
    ),
)
_NEXT_SEQ_FOR_NEW_SEND = Prepared(
    channels.update()
    .where(channels.c.id == sa.bindparam("cid"), *_NEW_SEND_ALLOWED)
    .values(last_seq=channels.c.last_seq + 1)
    .returning(
        channels.c.last_seq,
        channels.c.kind,
        sa.select(sa.func.count())
        .where(channel_members.c.channel_id == channels.c.id)
        .scalar_subquery()
        .label("members"),
    )
)
_NEXT_SEQ_FOR_NEW_SEND_PG = postgres.next_seq_for_new_send(_NEW_SEND_ALLOWED)


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


class SqlChannels:
    """The channels and channel_members tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, channel: Channel, dm_key: str | None = None) -> None:
        self._conn.execute(
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

    def by_dm_key(self, dm_key: str) -> Channel | None:
        row = self._conn.execute(sa.select(channels).where(channels.c.dm_key == dm_key)).first()
        return channel_from_row(row) if row else None

    def rename(self, channel_id: str, name: str) -> None:
        self._conn.execute(channels.update().where(channels.c.id == channel_id).values(name=name))

    def next_seq(self, channel_id: str) -> int:
        return int(NEXT_SEQ.scalar(self._conn, {"cid": channel_id}))

    def next_seq_for_new_send(
        self, channel_id: str, user_id: str, client_msg_id: str, small_max: int
    ) -> SendSlot | None:
        params = {"cid": channel_id, "uid": user_id, "cmid": client_msg_id}
        if not postgres.is_postgres(self._conn):
            row = _NEXT_SEQ_FOR_NEW_SEND.first(self._conn, params)
            if row is None:
                return None
            return SendSlot(int(row.last_seq), str(row.kind), int(row.members))
        row = _NEXT_SEQ_FOR_NEW_SEND_PG.first(
            self._conn, {**params, "sender": user_id, "small_max": small_max}
        )
        if row is None:
            return None
        recipients = row.recipients
        return SendSlot(
            int(row.last_seq),
            str(row.kind),
            int(row.members),
            None if recipients is None else postgres.recipients_from_json(recipients),
        )

    def last_seqs(self, channel_ids: list[str]) -> dict[str, int]:
        rows = self._conn.execute(
            sa.select(channels.c.id, channels.c.last_seq).where(channels.c.id.in_(channel_ids))
        )
        return {row.id: int(row.last_seq) for row in rows}

    def access(
        self, channel_id: str, user_id: str
    ) -> tuple[Channel, Role | None, Role | None] | None:
        row = _CHANNEL_ACCESS.first(self._conn, {"channel_id": channel_id, "user_id": user_id})
        if row is None:
            return None
        return (
            channel_from_row(row),
            cast(Role | None, row.member_role),
            cast(Role | None, row.team_role),
        )

    def membership(self, channel_id: str, user_id: str) -> tuple[Role, int] | None:
        row = self._conn.execute(
            sa.select(channel_members.c.role, channel_members.c.read_seq).where(
                channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id
            )
        ).first()
        return (cast(Role, row.role), int(row.read_seq)) if row else None

    def member_count(self, channel_id: str) -> int:
        return int(
            self._conn.execute(
                sa.select(sa.func.count()).where(channel_members.c.channel_id == channel_id)
            ).scalar_one()
        )

    def add_member(
        self, channel_id: str, user_id: str, role: Role, at: int, read_seq: int = 0
    ) -> None:
        self._conn.execute(
            channel_members.insert().values(
                channel_id=channel_id, user_id=user_id, role=role, read_seq=read_seq, joined_at=at
            )
        )

    def remove_member(self, channel_id: str, user_id: str) -> None:
        self._conn.execute(
            channel_members.delete().where(
                channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id
            )
        )

    def members(self, channel_id: str) -> list[Member]:
        rows = self._conn.execute(
            sa.select(channel_members, users.c.display_name)
            .join(users, users.c.id == channel_members.c.user_id)
            .where(channel_members.c.channel_id == channel_id)
            .order_by(channel_members.c.joined_at)
        )
        return [Member(r.user_id, r.display_name, cast(Role, r.role), r.joined_at) for r in rows]

    def member_ids(self, channel_id: str) -> list[str]:
        return list(
            self._conn.execute(
                sa.select(channel_members.c.user_id).where(
                    channel_members.c.channel_id == channel_id
                )
            ).scalars()
        )

    def set_read_seq(self, channel_id: str, user_id: str, seq: int) -> int:
        self._conn.execute(
            channel_members.update()
            .where(
                channel_members.c.channel_id == channel_id,
                channel_members.c.user_id == user_id,
                channel_members.c.read_seq < seq,
            )
            .values(read_seq=seq)
        )
        membership = self.membership(channel_id, user_id)
        return membership[1] if membership else 0

    def of_user(self, user_id: str) -> list[tuple[Channel, Role, int]]:
        rows = self._conn.execute(
            sa.select(channels, channel_members.c.role, channel_members.c.read_seq)
            .join(channel_members, channel_members.c.channel_id == channels.c.id)
            .where(channel_members.c.user_id == user_id)
            .order_by(channels.c.created_at)
        )
        return [(channel_from_row(r), cast(Role, r.role), int(r.read_seq)) for r in rows]

    def of_team_for(self, team_id: str, user_id: str) -> list[tuple[Channel, Role | None, int]]:
        cm = channel_members
        rows = self._conn.execute(
            sa.select(channels, cm.c.role, cm.c.read_seq)
            .outerjoin(cm, sa.and_(cm.c.channel_id == channels.c.id, cm.c.user_id == user_id))
            .where(
                channels.c.team_id == team_id,
                sa.or_(channels.c.kind == "public", cm.c.user_id.is_not(None)),
            )
            .order_by(channels.c.created_at)
        )
        return [
            (channel_from_row(r), cast(Role | None, r.role), int(r.read_seq or 0)) for r in rows
        ]

    def unread_count(self, channel_id: str, user_id: str, read_seq: int) -> int:
        return int(
            self._conn.execute(
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

    def unread_counts(self, user_id: str) -> dict[str, int]:
        cm = channel_members
        rows = self._conn.execute(
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
