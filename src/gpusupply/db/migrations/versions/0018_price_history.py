"""prices over time: price history points, price alerts and their firings (issue 18)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpusupply.db.models import UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vendor", sa.String(length=20), nullable=False),
        sa.Column("gpu_type", sa.String(length=100), nullable=False),
        sa.Column("gpu_family", sa.String(length=50), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=10), nullable=False),
        sa.Column("contract_type", sa.String(length=10), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("min_price", sa.Float(), nullable=False),
        sa.Column("median_price", sa.Float(), nullable=False),
        sa.Column("max_price", sa.Float(), nullable=False),
        sa.Column("offers", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_price_points_family_at", "price_points", ["gpu_family", "at"])
    op.create_index("ix_price_points_step_at", "price_points", ["step_seconds", "at"])
    op.create_table(
        "price_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("procure", sa.JSON(), nullable=True),
        sa.Column("procured_count", sa.Integer(), nullable=False),
        sa.Column("last_price", sa.Float(), nullable=True),
        sa.Column("evaluated_through", UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_fired_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_price_alerts_tenant_id", "price_alerts", ["tenant_id"])
    op.create_table(
        "price_alert_firings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=20), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("vendor", sa.String(length=20), nullable=True),
        sa.Column("offer_id", sa.Uuid(), nullable=True),
        sa.Column("resource_id", sa.Uuid(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["price_alerts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_price_alert_firings_alert_id", "price_alert_firings", ["alert_id"])
    op.create_index("ix_price_alert_firings_tenant_id", "price_alert_firings", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("price_alert_firings")
    op.drop_table("price_alerts")
    op.drop_index("ix_price_points_step_at", table_name="price_points")
    op.drop_index("ix_price_points_family_at", table_name="price_points")
    op.drop_table("price_points")
