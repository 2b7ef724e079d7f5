"""Revoked logins and failed sign-ins: the rows behind session revocation and lockout."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.records import LoginFailures
from realtimechat.storage.tables import login_failures, revoked_sessions


class SqlSessions:
    """The revoked_sessions and login_failures tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def revoke(self, session_id: str, now: int, expires_at: int) -> None:
        rs = revoked_sessions
        found = self._conn.execute(
            sa.select(rs.c.expires_at).where(rs.c.session_id == session_id)
        ).scalar()
        if found is None:
            self._conn.execute(
                rs.insert().values(session_id=session_id, revoked_at=now, expires_at=expires_at)
            )
        elif found < expires_at:
            self._conn.execute(
                rs.update()
                .where(rs.c.session_id == session_id)
                .values(revoked_at=now, expires_at=expires_at)
            )

    def revoked_since(self, since: int, now: int) -> list[tuple[str, int]]:
        rs = revoked_sessions
        rows = self._conn.execute(
            sa.select(rs.c.session_id, rs.c.expires_at).where(
                rs.c.revoked_at >= since, rs.c.expires_at > now
            )
        )
        return [(str(r.session_id), int(r.expires_at)) for r in rows]

    def delete_expired_revocations(self, now: int) -> int:
        """Forget revocations whose tokens have all expired by now."""
        rs = revoked_sessions
        return int(self._conn.execute(rs.delete().where(rs.c.expires_at <= now)).rowcount)

    def failures(self, account_key: str) -> LoginFailures:
        row = self._conn.execute(
            sa.select(login_failures).where(login_failures.c.account_key == account_key)
        ).first()
        if row is None:
            return LoginFailures()
        return LoginFailures(int(row.failures), int(row.locked_until), int(row.last_failed_at))

    def set_failures(self, account_key: str, state: LoginFailures) -> None:
        lf = login_failures
        if state.failures == 0:
            self._conn.execute(lf.delete().where(lf.c.account_key == account_key))
            return
        values = {
            "failures": state.failures,
            "locked_until": state.locked_until,
            "last_failed_at": state.last_failed_at,
        }
        updated = self._conn.execute(
            lf.update().where(lf.c.account_key == account_key).values(**values)
        ).rowcount
        if not updated:
            self._conn.execute(lf.insert().values(account_key=account_key, **values))

    def delete_stale_failures(self, before: int) -> int:
        """Forget failures last seen before `before` whose lock has passed."""
        lf = login_failures
        return int(
            self._conn.execute(
                lf.delete().where(lf.c.last_failed_at < before, lf.c.locked_until < before)
            ).rowcount
        )
