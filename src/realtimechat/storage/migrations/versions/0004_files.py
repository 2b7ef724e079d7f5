"""files, team storage usage, file shares

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:40:00

Expand only: new tables that earlier releases do not read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(length=36)


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", ID, nullable=False),
        sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("uploader_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("storage_key"),
    )
    op.create_index("ix_files_state_created", "files", ["state", "created_at"])
    op.create_index("ix_files_team", "files", ["team_id"])
    op.create_table(
        "team_storage",
        sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
    )
    op.create_table(
        "file_shares",
        sa.Column("file_id", ID, sa.ForeignKey("files.id"), nullable=False),
        sa.Column("message_id", ID, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("file_id", "message_id"),
    )
    op.create_index("ix_file_shares_message", "file_shares", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_file_shares_message", table_name="file_shares")
    op.drop_table("file_shares")
    op.drop_table("team_storage")
    op.drop_index("ix_files_team", table_name="files")
    op.drop_index("ix_files_state_created", table_name="files")
    op.drop_table("files")
