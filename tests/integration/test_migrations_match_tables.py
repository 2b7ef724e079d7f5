"""The migrations build exactly the schema storage/tables.py declares, on SQLite and PostgreSQL.

Alembic's autogenerate comparison runs against a freshly migrated database: any table,
column, type, nullability, server default, index or constraint that differs is listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from realtimechat.settings import Settings
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.tables import metadata
from tests.postgres import postgres_server


@pytest.fixture(params=["sqlite", "postgres"])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings of a database that `upgrade` has just brought to head."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
        await asyncio.to_thread(upgrade, settings)
        yield settings
        return
    async with postgres_server() as pg:
        settings = Settings(data_dir=tmp_path, database_url=pg.url)
        await asyncio.to_thread(upgrade, settings)
        yield settings


def differences(settings: Settings) -> list[Any]:
    """What autogenerate would change to make the database match tables.py."""
    engine = sa.create_engine(settings.db_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diffs: list[Any] = compare_metadata(context, metadata)
            return diffs
    finally:
        engine.dispose()


async def test_the_migrated_schema_is_exactly_the_declared_one(migrated: Settings) -> None:
    assert await asyncio.to_thread(differences, migrated) == []
