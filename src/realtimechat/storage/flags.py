"""Feature flags: runtime switches, on unless set off."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.storage.tables import feature_flags
from realtimechat.storage.upsert import upsert


class SqlFlags:
    """The feature_flags table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def all(self) -> dict[str, bool]:
        rows = self._conn.execute(sa.select(feature_flags.c.name, feature_flags.c.enabled))
        return {r.name: bool(r.enabled) for r in rows}

    def set(self, name: str, enabled: bool, now: int) -> None:
        upsert(self._conn, feature_flags, {"name": name}, {"enabled": enabled, "updated_at": now})
