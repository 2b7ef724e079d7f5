"""Refresh-token rows (stored hashed, grouped in families for reuse detection), and
the secrets nodes share."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.records import RefreshToken
from realtimechat.ids import new_id
from realtimechat.storage.tables import refresh_tokens, shared_secrets


class SqlTokens:
    """The refresh_tokens table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def by_hash(self, token_hash: str) -> RefreshToken | None:
        row = self._conn.execute(
            sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        ).first()
        if row is None:
            return None
        return RefreshToken(
            row.id,
            row.user_id,
            row.token_hash,
            row.family_id,
            int(row.created_at),
            int(row.expires_at),
            row.used_at,
            row.revoked_at,
        )

    def add(
        self, *, user_id: str, token_hash: str, family_id: str, now: int, expires_at: int
    ) -> None:
        self._conn.execute(
            refresh_tokens.insert().values(
                id=new_id(),
                user_id=user_id,
                token_hash=token_hash,
                family_id=family_id,
                created_at=now,
                expires_at=expires_at,
            )
        )

    def mark_used(self, token_id: str, now: int) -> None:
        self._conn.execute(
            refresh_tokens.update().where(refresh_tokens.c.id == token_id).values(used_at=now)
        )

    def revoke_family(self, family_id: str, now: int) -> None:
        rt = refresh_tokens
        self._conn.execute(
            rt.update()
            .where(rt.c.family_id == family_id, rt.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def delete_expired(self, now: int, limit: int = 1000) -> int:
        """Delete up to `limit` tokens past their expiry (a reused one is refused anyway)."""
        rt = refresh_tokens
        ids = sa.select(rt.c.id).where(rt.c.expires_at < now).limit(limit)
        return int(self._conn.execute(rt.delete().where(rt.c.id.in_(ids))).rowcount)


def shared_secret(conn: Connection, name: str, candidate: str) -> str:
    """The stored secret `name`; `candidate` becomes it if none is stored yet."""
    found = conn.execute(sa.select(shared_secrets.c.value).where(shared_secrets.c.name == name))
    value = found.scalar()
    if value is not None:
        return str(value)
    # Two nodes starting at once: the primary key lets one insert win; both read it.
    with contextlib.suppress(sa.exc.IntegrityError), conn.begin_nested():
        conn.execute(shared_secrets.insert().values(name=name, value=candidate))
    found = conn.execute(sa.select(shared_secrets.c.value).where(shared_secrets.c.name == name))
    return str(found.scalar_one())
