"""Schema migrations with Alembic, expand/contract only."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from realtimechat.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    """An Alembic config for the settings' database, with no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.db_url())
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
