"""Notification jobs, push devices and notification settings."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.notifications import Device, Job, JobKind, PlannedJob, Reason, Recipient
from realtimechat.ids import new_id
from realtimechat.storage import postgres
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.recipients import (
    CS,
    NS,
    RECIPIENTS,
    SETTINGS,
    recipient,
    recipients_query,
)
from realtimechat.storage.tables import (
    channel_members,
    channels,
    devices,
    messages,
    notification_jobs,
    users,
)
from realtimechat.storage.upsert import upsert

_INSERT_JOB = Prepared(notification_jobs.insert())


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


def _device(row: Any) -> Device:
    return Device(row.id, row.user_id, row.platform, row.token, int(row.created_at))


class SqlNotifications:
    """The notification_jobs, devices and notification settings tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def recipients(
        self, channel_id: str, sender_id: str, mention_keys: set[str] | None
    ) -> list[Recipient]:
        params = {"cid": channel_id, "sender": sender_id}
        if mention_keys is None:
            rows: list[Any] = RECIPIENTS.all(self._conn, params)
        else:
            key = sa.func.lower(sa.func.replace(users.c.display_name, " ", ""))
            q = recipients_query().where(key.in_(sorted(mention_keys)))
            rows = list(self._conn.execute(q, params))
        return [
            recipient((r.user_id, r.display_name, r.push, r.email, r.muted, r.has_device))
            for r in rows
        ]

    # --- jobs

    def claim_jobs(self, kinds: list[str], now: int, lease_ms: int, limit: int) -> list[Job]:
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
        jobs = self._claim(sa.and_(due, nj.c.kind.in_(kinds)), now, lease_ms, limit)
        mailed = sorted({j.user_id for j in jobs if j.kind == "email"})
        if mailed:
            rest = sa.and_(nj.c.kind == "email", nj.c.state == "pending", nj.c.user_id.in_(mailed))
            jobs += self._claim(rest, now, lease_ms, None)
        return sorted(jobs, key=lambda j: (j.due_at, j.id))

    def _claim(
        self, where: sa.ColumnElement[bool], now: int, lease_ms: int, limit: int | None
    ) -> list[Job]:
        nj = notification_jobs
        pick = postgres.skip_locked(
            self._conn, sa.select(nj.c.id).where(where).order_by(nj.c.due_at).limit(limit)
        )
        rows = self._conn.execute(
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

    def finish_jobs(self, ids: list[str], state: str, now: int, error: str | None = None) -> None:
        if ids:
            self._conn.execute(
                notification_jobs.update()
                .where(notification_jobs.c.id.in_(ids), notification_jobs.c.state == "sending")
                .values(state=state, updated_at=now, last_error=error, claimed_until=0)
            )

    def retry_jobs(
        self, ids: list[str], due_at: int, now: int, error: str, *, refund: bool = False
    ) -> None:
        if ids:
            nj = notification_jobs
            self._conn.execute(
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

    def delete_finished(self, sent_before: int, dead_before: int, limit: int = 1000) -> int:
        """Delete up to `limit` finished jobs: sent or skipped ones updated before
        `sent_before`, dead ones (kept longer, for requeueing) before `dead_before`."""
        nj = notification_jobs
        old = sa.or_(
            sa.and_(nj.c.state.in_(("sent", "skipped")), nj.c.updated_at < sent_before),
            sa.and_(nj.c.state == "dead", nj.c.updated_at < dead_before),
        )
        ids = sa.select(nj.c.id).where(old).limit(limit)
        return int(
            self._conn.execute(nj.delete().where(nj.c.id.in_(ids.scalar_subquery()))).rowcount
        )

    def job_counts(self) -> dict[str, dict[str, int]]:
        nj = notification_jobs
        rows = self._conn.execute(
            sa.select(nj.c.kind, nj.c.state, sa.func.count()).group_by(nj.c.kind, nj.c.state)
        )
        out: dict[str, dict[str, int]] = {"push": {}, "email": {}}
        for kind, state, n in rows:
            out.setdefault(kind, {})[state] = int(n)
        return out

    def job_context(self, channel_id: str, seq: int, user_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            sa.select(
                messages.c.body,
                messages.c.deleted_at,
                users.c.display_name.label("sender"),
                channels.c.name.label("channel"),
                channels.c.kind,
                channel_members.c.read_seq,
                *SETTINGS,
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
                .outerjoin(NS, NS.c.user_id == user_id)
                .outerjoin(CS, sa.and_(CS.c.user_id == user_id, CS.c.channel_id == channel_id))
            )
            .where(messages.c.channel_id == channel_id, messages.c.seq == seq)
        ).first()
        if row is None or row.deleted_at is not None:
            return None
        return dict(row._mapping)

    # --- devices

    def register_device(
        self, user_id: str, platform: str, token: str, now: int
    ) -> tuple[Device, bool]:
        """Register a push token for the user; (device, created). A token registered by
        another user moves to this one: the device changed hands."""
        row = self._conn.execute(sa.select(devices).where(devices.c.token == token)).first()
        if row is not None:
            if row.user_id == user_id and row.platform == platform:
                return _device(row), False
            self._conn.execute(
                devices.update()
                .where(devices.c.id == row.id)
                .values(user_id=user_id, platform=platform, created_at=now)
            )
            return Device(row.id, user_id, platform, token, now), row.user_id != user_id
        device = Device(new_id(), user_id, platform, token, now)
        self._conn.execute(devices.insert().values(**device.__dict__))
        return device, True

    def devices(self, user_id: str) -> list[Device]:
        rows = self._conn.execute(
            sa.select(devices).where(devices.c.user_id == user_id).order_by(devices.c.created_at)
        )
        return [_device(r) for r in rows]

    def delete_device(self, user_id: str, device_id: str) -> bool:
        result = self._conn.execute(
            devices.delete().where(devices.c.id == device_id, devices.c.user_id == user_id)
        )
        return bool(result.rowcount)

    def forget_token(self, token: str) -> None:
        """The provider said the token is dead."""
        self._conn.execute(devices.delete().where(devices.c.token == token))

    # --- settings

    def user_settings(self, user_id: str) -> tuple[bool, bool]:
        row = self._conn.execute(
            sa.select(NS.c.push, NS.c.email).where(NS.c.user_id == user_id)
        ).first()
        return (True, True) if row is None else (bool(row.push), bool(row.email))

    def put_user_settings(self, user_id: str, push: bool, email: bool) -> None:
        upsert(self._conn, NS, {"user_id": user_id}, {"push": push, "email": email})

    def channel_muted(self, user_id: str, channel_id: str) -> bool:
        muted = self._conn.execute(
            sa.select(CS.c.muted).where(CS.c.user_id == user_id, CS.c.channel_id == channel_id)
        ).scalar()
        return bool(muted)

    def put_channel_muted(self, user_id: str, channel_id: str, muted: bool) -> None:
        upsert(self._conn, CS, {"user_id": user_id, "channel_id": channel_id}, {"muted": muted})
