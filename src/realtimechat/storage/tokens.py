"""Refresh-token rows: stored hashed, grouped in families for reuse detection."""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from realtimechat.ids import new_id
from realtimechat.storage.tables import refresh_tokens, shared_secrets


def by_hash(conn: Connection, token_hash: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    ).first()


def insert(
    conn: Connection, *, user_id: str, token_hash: str, family_id: str, now: int, expires_at: int
) -> None:
    conn.execute(
        refresh_tokens.insert().values(
            id=new_id(),
            user_id=user_id,
            token_hash=token_hash,
            family_id=family_id,
            created_at=now,
            expires_at=expires_at,
        )
    )


def mark_used(conn: Connection, token_id: str, now: int) -> None:
    conn.execute(refresh_tokens.update().where(refresh_tokens.c.id == token_id).values(used_at=now))


def revoke_family(conn: Connection, family_id: str, now: int) -> None:
    conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def delete_expired(conn: Connection, now: int, limit: int = 1000) -> int:
    """Delete up to `limit` tokens past their expiry (a reused one is refused anyway)."""
    ids = sa.select(refresh_tokens.c.id).where(refresh_tokens.c.expires_at < now).limit(limit)
    return int(conn.execute(refresh_tokens.delete().where(refresh_tokens.c.id.in_(ids))).rowcount)


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
