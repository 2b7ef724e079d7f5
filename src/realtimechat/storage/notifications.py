"""Devices, notification settings, notification jobs and feature flags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.notifications import (
    Device,
    Job,
    JobKind,
    PlannedJob,
    Reason,
    Recipient,
)
from realtimechat.ids import new_id
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import (
    channel_members,
    channel_notification_settings,
    channels,
    devices,
    feature_flags,
    messages,
    notification_jobs,
    notification_settings,
    users,
)

_ns = notification_settings
_cs = channel_notification_settings
# A user's switches and the channel's mute, with their defaults when never set
# (queries that use them outer-join _ns and _cs).
_SETTINGS = (
    sa.func.coalesce(_ns.c.push, sa.true()).label("push"),
    sa.func.coalesce(_ns.c.email, sa.true()).label("email"),
    sa.func.coalesce(_cs.c.muted, sa.false()).label("muted"),
)


def _recipients_query() -> sa.Select[Any]:
    has_device = sa.exists().where(devices.c.user_id == channel_members.c.user_id)
    return (
        sa.select(
            channel_members.c.user_id,
            users.c.display_name,
            *_SETTINGS,
            has_device.label("has_device"),
        )
        .select_from(
            channel_members.join(users, users.c.id == channel_members.c.user_id)
            .outerjoin(_ns, _ns.c.user_id == channel_members.c.user_id)
            .outerjoin(
                _cs,
                sa.and_(
                    _cs.c.user_id == channel_members.c.user_id,
                    _cs.c.channel_id == channel_members.c.channel_id,
                ),
            )
        )
        .where(
            channel_members.c.channel_id == sa.bindparam("cid"),
            channel_members.c.user_id != sa.bindparam("sender"),
        )
    )


# On the send path of every DM and small-channel message (storage/prepared.py).
_RECIPIENTS = Prepared(_recipients_query())
_INSERT_JOB = Prepared(notification_jobs.insert())


def recipients_json() -> sa.ScalarSelect[Any]:
    """`recipients` as one JSON array of rows (PostgreSQL), for a send to read with its seq."""
    r = _recipients_query().subquery()
    row = sa.func.json_build_array(
        r.c.user_id, r.c.display_name, r.c.push, r.c.email, r.c.muted, r.c.has_device
    )
    return sa.select(
        sa.func.coalesce(sa.func.json_agg(row), sa.literal_column("'[]'::json"))
    ).scalar_subquery()


def recipients_from_json(rows: list[list[Any]]) -> list[Recipient]:
    """The rows of `recipients_json`."""
    return [_recipient(row) for row in rows]


def _recipient(row: Sequence[Any]) -> Recipient:
    user_id, display_name, push, email, muted, has_device = row
    return Recipient(
        str(user_id), str(display_name), bool(push), bool(email), bool(muted), bool(has_device)
    )


def recipients(
    conn: Connection, channel_id: str, sender_id: str, mention_keys: set[str] | None
) -> list[Recipient]:
    """The channel's other members with their settings (only those mentioned, if given)."""
    params = {"cid": channel_id, "sender": sender_id}
    if mention_keys is None:
        rows: list[Any] = _RECIPIENTS.all(conn, params)
    else:
        key = sa.func.lower(sa.func.replace(users.c.display_name, " ", ""))
        q = _recipients_query().where(key.in_(sorted(mention_keys)))
        rows = list(conn.execute(q, params))
    return [
        _recipient((r.user_id, r.display_name, r.push, r.email, r.muted, r.has_device))
        for r in rows
    ]


def job_row(job: PlannedJob) -> dict[str, Any]:
    """A planned job's own columns, with a new id."""
    return {
        "id": new_id(),
        "user_id": job.user_id,
        "kind": job.kind,
        "reason": job.reason,
        "due_at": job.due_at,
    }


def insert_jobs(
    conn: Connection, channel_id: str, seq: int, jobs: list[PlannedJob], now: int
) -> None:
    """A message's jobs (on PostgreSQL, a send writes them with the message instead)."""
    for j in jobs:
        _INSERT_JOB.execute(
            conn,
            {
                **job_row(j),
                "channel_id": channel_id,
                "seq": seq,
                "state": "pending",
                "attempts": 0,
                "claimed_until": 0,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            },
        )


def claim_jobs(
    conn: Connection, kinds: list[str], now: int, lease_ms: int, limit: int
) -> list[Job]:
    """Claim due jobs (and ones whose claimer died) until now + lease_ms.

    A user's e-mail jobs go out together: with one of theirs due, the rest of their
    pending e-mail jobs are claimed too, for one e-mail instead of one per message.
    On PostgreSQL, FOR UPDATE SKIP LOCKED lets several workers claim side by side
    without taking the same job; SQLite has one writer, so one claimer at a time.
    """
    if not kinds:
        return []
    nj = notification_jobs
    due = sa.or_(
        sa.and_(nj.c.state == "pending", nj.c.due_at <= now),
        sa.and_(nj.c.state == "sending", nj.c.claimed_until <= now),
    )
    jobs = _claim(conn, sa.and_(due, nj.c.kind.in_(kinds)), now, lease_ms, limit)
    mailed = sorted({j.user_id for j in jobs if j.kind == "email"})
    if mailed:
        rest = sa.and_(nj.c.kind == "email", nj.c.state == "pending", nj.c.user_id.in_(mailed))
        jobs += _claim(conn, rest, now, lease_ms, None)
    return sorted(jobs, key=lambda j: (j.due_at, j.id))


def _claim(
    conn: Connection, where: sa.ColumnElement[bool], now: int, lease_ms: int, limit: int | None
) -> list[Job]:
    nj = notification_jobs
    pick = sa.select(nj.c.id).where(where).order_by(nj.c.due_at).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = conn.execute(
        nj.update()
        .where(nj.c.id.in_(pick.scalar_subquery()))
        .values(
            state="sending",
            claimed_until=now + lease_ms,
            attempts=nj.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            nj.c.id,
            nj.c.user_id,
            nj.c.channel_id,
            nj.c.seq,
            nj.c.kind,
            nj.c.reason,
            nj.c.attempts,
            nj.c.due_at,
        )
    ).all()
    return [
        Job(
            r.id,
            r.user_id,
            r.channel_id,
            int(r.seq),
            cast(JobKind, r.kind),
            cast(Reason, r.reason),
            int(r.attempts),
            int(r.due_at),
        )
        for r in rows
    ]


def finish_jobs(
    conn: Connection, ids: list[str], state: str, now: int, error: str | None = None
) -> None:
    """Mark claimed jobs sent, skipped or dead (with the last error)."""
    if ids:
        conn.execute(
            notification_jobs.update()
            .where(notification_jobs.c.id.in_(ids), notification_jobs.c.state == "sending")
            .values(state=state, updated_at=now, last_error=error, claimed_until=0)
        )


def retry_jobs(
    conn: Connection, ids: list[str], due_at: int, now: int, error: str, *, refund: bool = False
) -> None:
    """Put claimed jobs back for a later attempt (`refund`: this claim made none)."""
    if ids:
        nj = notification_jobs
        conn.execute(
            nj.update()
            .where(nj.c.id.in_(ids), nj.c.state == "sending")
            .values(
                state="pending",
                due_at=due_at,
                updated_at=now,
                last_error=error,
                claimed_until=0,
                attempts=nj.c.attempts - 1 if refund else nj.c.attempts,
            )
        )


def delete_finished(conn: Connection, sent_before: int, dead_before: int, limit: int = 1000) -> int:
    """Delete up to `limit` finished jobs: sent or skipped ones updated before
    `sent_before`, dead ones (kept longer, for requeueing) before `dead_before`."""
    nj = notification_jobs
    old = sa.or_(
        sa.and_(nj.c.state.in_(("sent", "skipped")), nj.c.updated_at < sent_before),
        sa.and_(nj.c.state == "dead", nj.c.updated_at < dead_before),
    )
    ids = sa.select(nj.c.id).where(old).limit(limit)
    return int(conn.execute(nj.delete().where(nj.c.id.in_(ids.scalar_subquery()))).rowcount)


def job_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Jobs by kind and state."""
    nj = notification_jobs
    rows = conn.execute(
        sa.select(nj.c.kind, nj.c.state, sa.func.count()).group_by(nj.c.kind, nj.c.state)
    )
    out: dict[str, dict[str, int]] = {"push": {}, "email": {}}
    for kind, state, n in rows:
        out.setdefault(kind, {})[state] = int(n)
    return out


def job_context(conn: Connection, channel_id: str, seq: int, user_id: str) -> dict[str, Any] | None:
    """What a job's notification says and whether it still should: None if the
    message is gone or the user left the channel."""
    row = conn.execute(
        sa.select(
            messages.c.body,
            messages.c.deleted_at,
            users.c.display_name.label("sender"),
            channels.c.name.label("channel"),
            channels.c.kind,
            channel_members.c.read_seq,
            *_SETTINGS,
        )
        .select_from(
            messages.join(users, users.c.id == messages.c.sender_id)
            .join(channels, channels.c.id == messages.c.channel_id)
            .join(
                channel_members,
                sa.and_(
                    channel_members.c.channel_id == messages.c.channel_id,
                    channel_members.c.user_id == user_id,
                ),
            )
            .outerjoin(_ns, _ns.c.user_id == user_id)
            .outerjoin(_cs, sa.and_(_cs.c.user_id == user_id, _cs.c.channel_id == channel_id))
        )
        .where(messages.c.channel_id == channel_id, messages.c.seq == seq)
    ).first()
    if row is None or row.deleted_at is not None:
        return None
    return dict(row._mapping)


def user_email(conn: Connection, user_id: str) -> str | None:
    return conn.execute(sa.select(users.c.email).where(users.c.id == user_id)).scalar()


# --- devices


def register_device(
    conn: Connection, user_id: str, platform: str, token: str, now: int
) -> tuple[Device, bool]:
    """Register a push token for the user; (device, created). A token registered by
    another user moves to this one: the device changed hands."""
    row = conn.execute(sa.select(devices).where(devices.c.token == token)).first()
    if row is not None:
        if row.user_id == user_id and row.platform == platform:
            return _device(row), False
        conn.execute(
            devices.update()
            .where(devices.c.id == row.id)
            .values(user_id=user_id, platform=platform, created_at=now)
        )
        return Device(row.id, user_id, platform, token, now), row.user_id != user_id
    device = Device(new_id(), user_id, platform, token, now)
    conn.execute(devices.insert().values(**device.__dict__))
    return device, True


def user_devices(conn: Connection, user_id: str) -> list[Device]:
    rows = conn.execute(
        sa.select(devices).where(devices.c.user_id == user_id).order_by(devices.c.created_at)
    )
    return [_device(r) for r in rows]


def delete_device(conn: Connection, user_id: str, device_id: str) -> bool:
    result = conn.execute(
        devices.delete().where(devices.c.id == device_id, devices.c.user_id == user_id)
    )
    return bool(result.rowcount)


def forget_token(conn: Connection, token: str) -> None:
    """The provider said the token is dead."""
    conn.execute(devices.delete().where(devices.c.token == token))


def _device(row: Any) -> Device:
    return Device(row.id, row.user_id, row.platform, row.token, int(row.created_at))


# --- settings


def user_settings(conn: Connection, user_id: str) -> tuple[bool, bool]:
    """(push, email) for the user; both on when never set."""
    row = conn.execute(sa.select(_ns.c.push, _ns.c.email).where(_ns.c.user_id == user_id)).first()
    return (True, True) if row is None else (bool(row.push), bool(row.email))


def put_user_settings(conn: Connection, user_id: str, push: bool, email: bool) -> None:
    _upsert(conn, _ns, {"user_id": user_id}, {"push": push, "email": email})


def channel_muted(conn: Connection, user_id: str, channel_id: str) -> bool:
    muted = conn.execute(
        sa.select(_cs.c.muted).where(_cs.c.user_id == user_id, _cs.c.channel_id == channel_id)
    ).scalar()
    return bool(muted)


def put_channel_muted(conn: Connection, user_id: str, channel_id: str, muted: bool) -> None:
    _upsert(conn, _cs, {"user_id": user_id, "channel_id": channel_id}, {"muted": muted})


# --- feature flags


def flags(conn: Connection) -> dict[str, bool]:
    """The flags that were ever set (a missing flag is on)."""
    rows = conn.execute(sa.select(feature_flags.c.name, feature_flags.c.enabled))
    return {r.name: bool(r.enabled) for r in rows}


def set_flag(conn: Connection, name: str, enabled: bool, now: int) -> None:
    _upsert(conn, feature_flags, {"name": name}, {"enabled": enabled, "updated_at": now})


def _upsert(conn: Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    where = [table.c[k] == v for k, v in key.items()]
    if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(**key, **values))
