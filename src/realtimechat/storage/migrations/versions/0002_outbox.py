"""outbox for the scale-out bus; secrets shared by all nodes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:00:00

Expand only: new tables that earlier releases do not read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_until", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "seq"),
    )
    op.create_index("ix_outbox_created", "outbox", ["created_at"], unique=False)
    op.create_table(
        "shared_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("shared_secrets")
    op.drop_index("ix_outbox_created", table_name="outbox")
    op.drop_table("outbox")
