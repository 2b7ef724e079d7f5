"""Alembic environment: runs migrations on the configured URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from realtimechat.storage.tables import metadata

config = context.config


def run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            # End the transaction that statement autobegan: alembic joins an open one
            # without committing it, and the alembic_version row would be rolled back.
            conn.commit()
        context.configure(
            connection=conn,
            target_metadata=metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
