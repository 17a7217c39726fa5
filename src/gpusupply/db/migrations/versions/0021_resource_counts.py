"""resources: a kept count per tenant (GET /resources' total), and the listing's index with its
tie-break (tenant_id, created_at, id)

Revision ID: 0021
Revises: 0020

The count is kept by triggers on `resources`, so every insert counts whatever code made it (the
procurement intents, fleets, clusters, seeds). On PostgreSQL the trigger is a deferred
constraint trigger: the tenant's count row is updated at commit, so a transaction never holds
that row's lock while it waits for another (an offer it claims after inserting a resource).
SQLite writes one transaction at a time anyway.

A later SQLite migration that rebuilds `resources` with `batch_alter_table` drops these triggers
with the old table: `tests/db/test_resource_counts.py` checks they exist at head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER resource_counts_insert AFTER INSERT ON resources BEGIN
        INSERT INTO resource_counts (tenant_id, resources) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET resources = resources + 1;
    END
    """,
    """
    CREATE TRIGGER resource_counts_delete AFTER DELETE ON resources BEGIN
        UPDATE resource_counts SET resources = resources - 1 WHERE tenant_id = OLD.tenant_id;
    END
    """,
)
_POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION resource_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO resource_counts (tenant_id, resources) VALUES (NEW.tenant_id, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET resources = resource_counts.resources + 1;
        ELSE
            UPDATE resource_counts SET resources = resources - 1 WHERE tenant_id = OLD.tenant_id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER resource_counts_keep AFTER INSERT OR DELETE ON resources
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION resource_counts_keep()
    """,
)


def upgrade() -> None:
    op.create_table(
        "resource_counts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("resources", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:  # the backfill and the triggers see one state: no insert between them
        op.execute("LOCK TABLE resources IN SHARE MODE")
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(
        "INSERT INTO resource_counts (tenant_id, resources) SELECT tenant_id, count(*) FROM resources GROUP BY tenant_id"
    )
    # Newest first with ties by id, read straight off the index (no sort of the page's rows).
    op.drop_index("ix_resources_tenant_created", table_name="resources")
    op.create_index("ix_resources_tenant_created", "resources", ["tenant_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_resources_tenant_created", table_name="resources")
    op.create_index("ix_resources_tenant_created", "resources", ["tenant_id", "created_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER resource_counts_keep ON resources")
        op.execute("DROP FUNCTION resource_counts_keep()")
    else:
        op.execute("DROP TRIGGER resource_counts_insert")
        op.execute("DROP TRIGGER resource_counts_delete")
    op.drop_table("resource_counts")
