"""vendor rate-limit buckets shared by every process (issue 16)

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("vendor", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=40), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "key_hash", "route"),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
