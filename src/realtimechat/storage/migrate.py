"""Schema migrations with Alembic, expand/contract only.

The deploy rule (docs/operations.md, "Rolling back"): every schema change is additive,
so the previous release runs on the new schema. For that, a release's start-up
migration must also accept a database at a revision it has never heard of (the next
release's): it then checks that every table and column it uses is there and leaves the
schema alone, instead of refusing to start as Alembic would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from realtimechat.settings import Settings
from realtimechat.storage.tables import metadata

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)


class SchemaMismatch(RuntimeError):
    """The database is at a revision this release does not know and lacks what it uses."""


def alembic_config(settings: Settings) -> Config:
    """An Alembic config for the settings' database, with no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.db_url())
    return cfg


def unknown_revisions(settings: Settings) -> tuple[list[str], list[str]]:
    """(the database's revisions this release does not know, what of its schema is missing).

    The second list names the tables and `table.column`s of this release's schema that the
    database lacks; it is only computed when there are unknown revisions.
    """
    script = ScriptDirectory.from_config(alembic_config(settings))
    known = {rev.revision for rev in script.walk_revisions()}
    engine = sa.create_engine(settings.db_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            unknown = [h for h in heads if h not in known]
            if not unknown:
                return [], []
            inspector = sa.inspect(conn)
            missing: list[str] = []
            for table in metadata.sorted_tables:
                if not inspector.has_table(table.name):
                    missing.append(table.name)
                    continue
                present = {c["name"] for c in inspector.get_columns(table.name)}
                missing += [
                    f"{table.name}.{c.name}" for c in table.columns if c.name not in present
                ]
            return unknown, missing
    finally:
        engine.dispose()


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema up to `revision`; on a newer schema that has ours, change nothing."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    unknown, missing = unknown_revisions(settings)
    if unknown and missing:
        raise SchemaMismatch(
            f"the database is at schema revision {', '.join(unknown)}, which this release "
            f"does not know, and lacks what it uses: {', '.join(missing)}. A newer release "
            "removed something too early (expand/contract, docs/operations.md)."
        )
    if unknown:
        # A rollback: the next release migrated this database. Its changes are additive,
        # and everything this release uses is there, so run on it as it is.
        log.warning(
            "database schema revision %s is newer than this release knows; every table "
            "and column this release uses is present, so it runs on it unchanged",
            ", ".join(unknown),
        )
        return
    command.upgrade(alembic_config(settings), revision)
