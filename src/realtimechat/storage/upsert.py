"""A portable upsert for rows that one writer at a time changes (settings, flags)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upsert(conn: Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row of `key`, or insert it if there is none."""
    where = [table.c[k] == v for k, v in key.items()]
    if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(**key, **values))
