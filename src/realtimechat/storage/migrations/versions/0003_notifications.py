"""devices, notification settings and jobs, feature flags

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:45:00

Expand only: new tables that earlier releases do not read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(length=36)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=4096), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_devices_user", "devices", ["user_id"])
    op.create_table(
        "notification_settings",
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("push", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "channel_notification_settings",
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("channel_id", ID, sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("muted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "channel_id"),
    )
    op.create_table(
        "notification_jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_until", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notification_jobs_due", "notification_jobs", ["state", "due_at"])
    op.create_index("ix_notification_jobs_user", "notification_jobs", ["user_id", "kind", "state"])
    op.create_table(
        "feature_flags",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("feature_flags")
    op.drop_index("ix_notification_jobs_user", table_name="notification_jobs")
    op.drop_index("ix_notification_jobs_due", table_name="notification_jobs")
    op.drop_table("notification_jobs")
    op.drop_table("channel_notification_settings")
    op.drop_table("notification_settings")
    op.drop_index("ix_devices_user", table_name="devices")
    op.drop_table("devices")
