"""fleets: keep N resources of a spec running (issue 17)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpusupply.db.models import UtcDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("ssh_public_key", sa.Text(), nullable=False),
        sa.Column("cloud_init", sa.Text(), nullable=True),
        sa.Column("on_preemption", sa.String(length=20), nullable=False),
        sa.Column("placement", sa.String(length=20), nullable=False),
        sa.Column("max_hourly_spend", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("cooldowns", sa.JSON(), nullable=False),
        sa.Column("replacing", sa.JSON(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("delete_requested_at", UtcDateTime(), nullable=True),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("lock_token", sa.Uuid(), nullable=True),
        sa.Column("lock_owner", sa.String(length=100), nullable=True),
        sa.Column("lock_expires_at", UtcDateTime(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fleets_tenant_id", "fleets", ["tenant_id"])
    op.create_index("ix_fleets_status", "fleets", ["status"])
    op.create_index("ix_fleets_engine_queue", "fleets", ["status", "next_attempt_at"])
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("fleet_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("fleet_noted_at", UtcDateTime(), nullable=True))
        batch.create_foreign_key("fk_resources_fleet_id", "fleets", ["fleet_id"], ["id"])
        batch.create_index("ix_resources_fleet_id", ["fleet_id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("fleet_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_events_fleet_id", ["fleet_id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_fleet_id")
        batch.drop_column("fleet_id")
    with op.batch_alter_table("resources") as batch:
        batch.drop_index("ix_resources_fleet_id")
        batch.drop_constraint("fk_resources_fleet_id", type_="foreignkey")
        batch.drop_column("fleet_noted_at")
        batch.drop_column("fleet_id")
    op.drop_index("ix_fleets_engine_queue", table_name="fleets")
    op.drop_index("ix_fleets_status", table_name="fleets")
    op.drop_index("ix_fleets_tenant_id", table_name="fleets")
    op.drop_table("fleets")
