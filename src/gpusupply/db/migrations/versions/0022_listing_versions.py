"""resource_counts.version: a tenant's listing version, moved by every change a listing shows

Revision ID: 0022
Revises: 0021

`GET /resources` keeps pages it has read and answers them again while the tenant's version is
the one it read before the page (services/listing.py). The version moves, in the transaction
that makes the change, on:

- a resource inserted or deleted (migration 0021's count triggers, extended);
- a resource updated in a column a listing shows or computes its cost from (`LISTED_COLUMNS`),
  or in `updated_at` while it is final without `ended_at` (its billing end is then
  `updated_at`, domain/costs.py). The engine's refreshes write `last_synced_at` and
  `updated_at` of running rows every 30 s and move nothing;
- a status change event inserted (the cost so far reads the transitions).

On PostgreSQL every trigger is a deferred constraint trigger, as 0021's: the tenant's row is
locked at commit only. As 0021 says, a later SQLite migration that rebuilds `resources` drops
its triggers: tests/db/test_resource_counts.py checks them at head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# What services/reads.py's SUMMARY_COLUMNS read and the cost so far uses, and the listing's filters.
LISTED_COLUMNS = (
    "tenant_id", "name", "status", "vendor", "vendor_region", "region", "external_ip", "ssh_host", "ssh_port", "ssh_user",
    "gpu_type", "gpu_family", "gpu_count", "offer_id", "price_per_hour", "created_at", "running_since", "ended_at",
    "resource_type", "cluster_id", "offer_snapshot",
)
_FINAL = "('deleted', 'failed', 'terminated')"


def _changed(distinct: str) -> str:
    """The WHEN condition of the update triggers (`distinct`: the dialect's null-safe 'differs')."""
    listed = " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in LISTED_COLUMNS if column != "offer_snapshot")
    # JSON compared as text: PostgreSQL's json type has no equality operator.
    snapshot = f"CAST(OLD.offer_snapshot AS TEXT) {distinct} CAST(NEW.offer_snapshot AS TEXT)"
    billing_end = f"(OLD.updated_at {distinct} NEW.updated_at AND NEW.ended_at IS NULL AND NEW.status IN {_FINAL})"
    return f"{listed} OR {snapshot} OR {billing_end}"


_UPDATE_OF = ", ".join((*LISTED_COLUMNS, "updated_at"))

_SQLITE_DROP = ("resource_counts_insert", "resource_counts_delete")
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER resource_counts_insert AFTER INSERT ON resources BEGIN
        INSERT INTO resource_counts (tenant_id, resources, version) VALUES (NEW.tenant_id, 1, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET resources = resources + 1, version = version + 1;
    END
    """,
    """
    CREATE TRIGGER resource_counts_delete AFTER DELETE ON resources BEGIN
        UPDATE resource_counts SET resources = resources - 1, version = version + 1 WHERE tenant_id = OLD.tenant_id;
    END
    """,
    f"""
    CREATE TRIGGER resource_listing_update AFTER UPDATE OF {_UPDATE_OF} ON resources
    WHEN {_changed("IS NOT")} BEGIN
        UPDATE resource_counts SET version = version + 1 WHERE tenant_id IN (OLD.tenant_id, NEW.tenant_id);
    END
    """,
    """
    CREATE TRIGGER resource_listing_event AFTER INSERT ON events
    WHEN NEW.kind = 'status_change' AND NEW.resource_id IS NOT NULL BEGIN
        UPDATE resource_counts SET version = version + 1
        WHERE tenant_id = (SELECT tenant_id FROM resources WHERE id = NEW.resource_id);
    END
    """,
)
_POSTGRES_TRIGGERS = (
    """
    CREATE OR REPLACE FUNCTION resource_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO resource_counts (tenant_id, resources, version) VALUES (NEW.tenant_id, 1, 1)
            ON CONFLICT (tenant_id) DO UPDATE
            SET resources = resource_counts.resources + 1, version = resource_counts.version + 1;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE resource_counts SET resources = resources - 1, version = version + 1 WHERE tenant_id = OLD.tenant_id;
        ELSE
            UPDATE resource_counts SET version = version + 1 WHERE tenant_id IN (OLD.tenant_id, NEW.tenant_id);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE CONSTRAINT TRIGGER resource_listing_update AFTER UPDATE OF {_UPDATE_OF} ON resources
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({_changed("IS DISTINCT FROM")})
    EXECUTE FUNCTION resource_counts_keep()
    """,
    """
    CREATE FUNCTION resource_listing_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE resource_counts SET version = version + 1
        WHERE tenant_id = (SELECT tenant_id FROM resources WHERE id = NEW.resource_id);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER resource_listing_event AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.kind = 'status_change' AND NEW.resource_id IS NOT NULL)
    EXECUTE FUNCTION resource_listing_event()
    """,
)

_POSTGRES_0021_FUNCTION = """
    CREATE OR REPLACE FUNCTION resource_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""
_SQLITE_0021_TRIGGERS = (
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


def upgrade() -> None:
    op.add_column("resource_counts", sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for name in _SQLITE_DROP:
            op.execute(f"DROP TRIGGER {name}")
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER resource_listing_event ON events")
        op.execute("DROP FUNCTION resource_listing_event()")
        op.execute("DROP TRIGGER resource_listing_update ON resources")
        op.execute(_POSTGRES_0021_FUNCTION)
        op.drop_column("resource_counts", "version")
        return
    # The triggers go first: none may name the column while SQLite drops it.
    for name in ("resource_listing_event", "resource_listing_update", *_SQLITE_DROP):
        op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("resource_counts") as batch:
        batch.drop_column("version")
    for statement in _SQLITE_0021_TRIGGERS:
        op.execute(statement)
