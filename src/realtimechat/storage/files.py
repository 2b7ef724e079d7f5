"""Files, team storage usage, and where files were shared."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from realtimechat.domain.files import FileRecord, FileState
from realtimechat.storage.postgres import greatest
from realtimechat.storage.tables import (
    channel_members,
    file_shares,
    files,
    messages,
    team_storage,
    users,
)


def _record(row: Any) -> FileRecord:
    return FileRecord(
        row.id,
        row.team_id,
        row.uploader_id,
        row.name,
        int(row.size),
        row.content_type,
        row.sha256,
        cast(FileState, row.state),
        row.storage_key,
        int(row.created_at),
    )


class SqlFiles:
    """The files, file_shares and team_storage tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def reserve(self, team_id: str, size: int, quota: int) -> bool:
        """Add `size` to the team's usage if it stays within `quota`; False otherwise.

        One conditional UPDATE: on PostgreSQL the row lock orders concurrent
        reservations, on SQLite the single writer does, so none can overshoot.
        """
        if (
            self._conn.execute(
                sa.select(team_storage.c.team_id).where(team_storage.c.team_id == team_id)
            ).first()
            is None
        ):
            try:
                with self._conn.begin_nested():
                    self._conn.execute(team_storage.insert().values(team_id=team_id, used_bytes=0))
            except sa_exc.IntegrityError:
                pass  # another reservation created it first
        result = self._conn.execute(
            team_storage.update()
            .where(
                team_storage.c.team_id == team_id,
                team_storage.c.used_bytes + size <= quota,
            )
            .values(used_bytes=team_storage.c.used_bytes + size)
        )
        return bool(result.rowcount)

    def release(self, team_id: str | None, size: int) -> None:
        """Give `size` back to the team's quota."""
        if team_id is not None:
            self._conn.execute(
                team_storage.update()
                .where(team_storage.c.team_id == team_id)
                .values(used_bytes=greatest(self._conn, team_storage.c.used_bytes - size, 0))
            )

    def used_bytes(self, team_id: str) -> int:
        value = self._conn.execute(
            sa.select(team_storage.c.used_bytes).where(team_storage.c.team_id == team_id)
        ).scalar()
        return int(value or 0)

    def add(self, f: FileRecord, now: int) -> None:
        self._conn.execute(
            files.insert().values(
                id=f.id,
                team_id=f.team_id,
                uploader_id=f.uploader_id,
                name=f.name,
                size=f.size,
                content_type=f.content_type,
                sha256=f.sha256,
                state=f.state,
                storage_key=f.storage_key,
                created_at=f.created_at,
                updated_at=now,
            )
        )

    def get(self, file_id: str) -> FileRecord | None:
        row = self._conn.execute(sa.select(files).where(files.c.id == file_id)).first()
        return None if row is None else _record(row)

    def set_state(self, file_id: str, from_state: str, to_state: FileState, now: int) -> bool:
        """Move a file between states if it is still in `from_state` (a race lost is False)."""
        result = self._conn.execute(
            files.update()
            .where(files.c.id == file_id, files.c.state == from_state)
            .values(state=to_state, updated_at=now)
        )
        return bool(result.rowcount)

    def by_ids(self, ids: list[str]) -> dict[str, FileRecord]:
        rows = self._conn.execute(sa.select(files).where(files.c.id.in_(ids)))
        return {r.id: _record(r) for r in rows}

    def share(self, message_id: str, channel_id: str, file_ids: list[str]) -> None:
        self._conn.execute(
            file_shares.insert(),
            [{"file_id": f, "message_id": message_id, "channel_id": channel_id} for f in file_ids],
        )

    def unshare_message(self, message_id: str) -> None:
        """A deleted message no longer shares its files."""
        self._conn.execute(file_shares.delete().where(file_shares.c.message_id == message_id))

    def may_download(self, f: FileRecord, user_id: str) -> bool:
        """The uploader, or a member of a channel where a live message shares the file."""
        if f.uploader_id == user_id:
            return True
        shared = self._conn.execute(
            sa.select(sa.literal(1))
            .select_from(
                file_shares.join(
                    channel_members,
                    sa.and_(
                        channel_members.c.channel_id == file_shares.c.channel_id,
                        channel_members.c.user_id == user_id,
                    ),
                ).join(messages, messages.c.id == file_shares.c.message_id)
            )
            .where(file_shares.c.file_id == f.id, messages.c.deleted_at.is_(None))
            .limit(1)
        ).first()
        return shared is not None

    def team_file_count(self, team_id: str, live_since: int) -> int:
        """Ready files and reservations made at or after `live_since` (the unexpired ones)."""
        return int(
            self._conn.execute(
                sa.select(sa.func.count()).where(
                    files.c.team_id == team_id,
                    sa.or_(
                        files.c.state == "ready",
                        sa.and_(files.c.state == "pending", files.c.created_at >= live_since),
                    ),
                )
            ).scalar_one()
        )

    def expire_pending(self, team_id: str, before: int, now: int) -> list[FileRecord]:
        """Mark the team's reservations made before `before` deleted and release their bytes."""
        stale = [
            _record(r)
            for r in self._conn.execute(
                sa.select(files).where(
                    files.c.state == "pending",
                    files.c.created_at < before,
                    files.c.team_id == team_id,
                )
            )
        ]
        released = [f for f in stale if self.set_state(f.id, "pending", "deleted", now)]
        if released:
            self.release(team_id, sum(f.size for f in released))
        return released

    def expired_pending_bytes(self, team_id: str, before: int) -> int:
        """Bytes still counted for the team's reservations made before `before`."""
        return int(
            self._conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(
                    files.c.state == "pending",
                    files.c.created_at < before,
                    files.c.team_id == team_id,
                )
            ).scalar_one()
        )

    def pending_of_user(self, user_id: str, since: int) -> tuple[int, int]:
        """How many reservations the user made at or after `since` still wait, and their bytes.

        Locks the user's row first (PostgreSQL; SQLite's single writer needs nothing), so
        concurrent declarations of one user are counted one after the other.
        """
        self._conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
        row = self._conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(
                files.c.state == "pending",
                files.c.created_at >= since,
                files.c.uploader_id == user_id,
            )
        ).one()
        return int(row[0]), int(row[1])

    # --- reconciliation

    def stale_pending(self, before: int, limit: int) -> list[FileRecord]:
        rows = self._conn.execute(
            sa.select(files)
            .where(files.c.state == "pending", files.c.created_at < before)
            .order_by(files.c.created_at)
            .limit(limit)
        )
        return [_record(r) for r in rows]

    def live_keys(self) -> set[str]:
        """Storage keys of pending and ready files (objects anything else may be removed)."""
        rows = self._conn.execute(
            sa.select(files.c.storage_key).where(files.c.state.in_(("pending", "ready")))
        )
        return {r.storage_key for r in rows}

    def recount_usage(self) -> dict[str, tuple[int, int]]:
        """Set every team's usage to the sum of its pending and ready files.

        Returns the teams whose counter was wrong: {team_id: (was, now)}.
        """
        actual = {
            r.team_id: int(r.total)
            for r in self._conn.execute(
                sa.select(files.c.team_id, sa.func.sum(files.c.size).label("total"))
                .where(files.c.state.in_(("pending", "ready")), files.c.team_id.is_not(None))
                .group_by(files.c.team_id)
            )
        }
        counted = {
            r.team_id: int(r.used_bytes)
            for r in self._conn.execute(
                sa.select(team_storage.c.team_id, team_storage.c.used_bytes)
            )
        }
        fixed: dict[str, tuple[int, int]] = {}
        for team_id in set(actual) | set(counted):
            want, have = actual.get(team_id, 0), counted.get(team_id)
            if have == want:
                continue
            if have is None:
                self._conn.execute(team_storage.insert().values(team_id=team_id, used_bytes=want))
            else:
                self._conn.execute(
                    team_storage.update()
                    .where(team_storage.c.team_id == team_id)
                    .values(used_bytes=want)
                )
            fixed[team_id] = (have or 0, want)
        return fixed
