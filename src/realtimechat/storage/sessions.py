"""Revoked logins and failed sign-ins: the rows behind session revocation and lockout."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.storage.tables import login_failures, revoked_sessions


def revoke(conn: Connection, session_id: str, now: int, expires_at: int) -> None:
    """Record a login as revoked (again: only the later expiry is kept)."""
    found = conn.execute(
        sa.select(revoked_sessions.c.expires_at).where(revoked_sessions.c.session_id == session_id)
    ).scalar()
    if found is None:
        conn.execute(
            revoked_sessions.insert().values(
                session_id=session_id, revoked_at=now, expires_at=expires_at
            )
        )
    elif found < expires_at:
        conn.execute(
            revoked_sessions.update()
            .where(revoked_sessions.c.session_id == session_id)
            .values(revoked_at=now, expires_at=expires_at)
        )


def revoked_since(conn: Connection, since: int, now: int) -> list[tuple[str, int]]:
    """(session_id, expires_at) of revocations recorded at or after `since`, not expired."""
    rows = conn.execute(
        sa.select(revoked_sessions.c.session_id, revoked_sessions.c.expires_at).where(
            revoked_sessions.c.revoked_at >= since, revoked_sessions.c.expires_at > now
        )
    )
    return [(str(r.session_id), int(r.expires_at)) for r in rows]


def delete_expired_revocations(conn: Connection, now: int) -> int:
    """Forget revocations whose tokens have all expired by now."""
    return int(
        conn.execute(revoked_sessions.delete().where(revoked_sessions.c.expires_at <= now)).rowcount
    )


@dataclass(frozen=True, slots=True)
class Failures:
    """An account key's failed sign-ins so far."""

    failures: int = 0
    locked_until: int = 0
    last_failed_at: int = 0


def failures(conn: Connection, account_key: str) -> Failures:
    row = conn.execute(
        sa.select(login_failures).where(login_failures.c.account_key == account_key)
    ).first()
    if row is None:
        return Failures()
    return Failures(int(row.failures), int(row.locked_until), int(row.last_failed_at))


def set_failures(conn: Connection, account_key: str, state: Failures) -> None:
    """Store an account key's failure state (a zero count deletes the row)."""
    if state.failures == 0:
        conn.execute(login_failures.delete().where(login_failures.c.account_key == account_key))
        return
    values = {
        "failures": state.failures,
        "locked_until": state.locked_until,
        "last_failed_at": state.last_failed_at,
    }
    updated = conn.execute(
        login_failures.update().where(login_failures.c.account_key == account_key).values(**values)
    ).rowcount
    if not updated:
        conn.execute(login_failures.insert().values(account_key=account_key, **values))


def delete_stale_failures(conn: Connection, before: int) -> int:
    """Forget failures last seen before `before` whose lock has passed."""
    return int(
        conn.execute(
            login_failures.delete().where(
                login_failures.c.last_failed_at < before, login_failures.c.locked_until < before
            )
        ).rowcount
    )
