"""clusters: a resource's type (vm or cluster) and the cluster a node belongs to

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("resource_type", sa.String(length=20), nullable=False, server_default="vm"))
        batch.add_column(sa.Column("cluster_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_resources_cluster_id", ["cluster_id"])


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_index("ix_resources_cluster_id")
        batch.drop_column("cluster_id")
        batch.drop_column("resource_type")
