"""instance safety: installation identity, confirmed absence, create-in-transit window

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gpusupply.db.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("singleton", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("created_at", gpusupply.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("singleton"),
    )
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("create_unknown_at", gpusupply.db.models.UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("absent_since", gpusupply.db.models.UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("vendor_states") as batch:
        batch.add_column(sa.Column("foreign_instances", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("vendor_states") as batch:
        batch.drop_column("foreign_instances")
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("absent_since")
        batch.drop_column("create_unknown_at")
    op.drop_table("installation")
