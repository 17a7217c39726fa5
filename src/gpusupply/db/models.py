"""SQLAlchemy 2 models. Migrations in db/migrations are the source of truth for the schema;
`tests/db/test_migrations.py` checks that they agree with these models.

Rows the engine works on carry lease columns (`LeaseMixin`): a worker claims a row by writing a
fresh `lock_token` with an expiry, does its vendor I/O outside any transaction, and applies its
result only `WHERE lock_token = :token`. See docs/engine.md.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # asyncpg answers in UTC already
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """On SQLite, the stored text (naive UTC, ISO 8601 as SQLAlchemy writes it) parsed as UTC
        in one C call: the generic path (parse, then `replace(tzinfo=UTC)`) cost 1.45 us a value
        against 0.16 us, and a page of resources reads hundreds. Anything else takes that path."""
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return generic

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                parsed = datetime.fromisoformat(value + "+00:00")
            except (TypeError, ValueError):  # text in another form: parsed as before
                parsed = None
            if parsed is not None and parsed.tzinfo is UTC:  # (a date alone would come back naive)
                return parsed
            return generic(value) if generic is not None else value

        return process


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class LeaseMixin:
    lock_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    lock_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lock_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the engine should look at the row next (backoff, polling cadence).
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # first characters, for lookup and display
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the whole token
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class OfferRow(Base):
    """An offer as returned to users: a row of a vendor catalog snapshot.

    Rows are written by the catalog refresh (one bulk insert per vendor refresh), so every replica
    answers `GET /offers/{id}` for any offer any replica returned, until it expires.
    """

    __tablename__ = "offers"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    snapshot_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    vendor: Mapped[str] = mapped_column(String(20))
    vendor_offer_id: Mapped[str] = mapped_column(String(200))
    gpu_type: Mapped[str] = mapped_column(String(100))
    gpu_family: Mapped[str] = mapped_column(String(50))
    gpu_count: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full normalized offer, vendor_data included
    fetched_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(20), default="available")  # available|procured|failed|expired
    procured_at: Mapped[datetime | None] = mapped_column(default=None)
    procured_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)  # tenant


class CatalogSnapshot(Base):
    """The newest complete catalog of one vendor; replicas reload their index when it changes."""

    __tablename__ = "catalog_snapshots"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    vendor: Mapped[str] = mapped_column(String(20), index=True)
    fetched_at: Mapped[datetime] = mapped_column()
    offer_count: Mapped[int] = mapped_column(Integer)
    current: Mapped[bool] = mapped_column(Boolean, default=True)


class Procurement(Base):
    __tablename__ = "procurements"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)  # null for procure-by-spec
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # first answer, for replays
    status: Mapped[str] = mapped_column(String(40))
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    procured_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("uq_procurement_idempotency", "tenant_id", "idempotency_key", unique=True),)


class Fleet(LeaseMixin, Base):
    """Keep `size` resources of `spec` running (docs/fleets.md). The engine's fleet job
    (engine/fleets.py) leases the row and closes the gap between wanted and running; the members
    are ordinary resources carrying `fleet_id`."""

    __tablename__ = "fleets"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the normalized get_offers document
    size: Mapped[int] = mapped_column(Integer)  # members wanted
    ssh_public_key: Mapped[str] = mapped_column(Text)
    cloud_init: Mapped[str | None] = mapped_column(Text, default=None)
    on_preemption: Mapped[str] = mapped_column(String(20), default="replace")  # replace | shrink
    placement: Mapped[str] = mapped_column(String(20), default="spread")  # spread | pack
    max_hourly_spend: Mapped[float | None] = mapped_column(Float, default=None)  # USD/h for all members
    status: Mapped[str] = mapped_column(String(20), index=True)  # active | degraded | deleting | deleted
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    # Vendor-regions that just took a member back: [{"vendor", "vendor_region", "until"}]; replacements
    # go elsewhere until then when another offer exists.
    cooldowns: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Members lost and not replaced yet: [{"resource_id", "vendor", "vendor_region", "at"}], so the
    # replacement's event names what it replaces and how long after the loss it was requested.
    replacing: Mapped[list[Any]] = mapped_column(JSON, default=list)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)  # consecutive rounds that could not reach size
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delete_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_fleets_engine_queue", "status", "next_attempt_at"),)


class Resource(LeaseMixin, Base):
    __tablename__ = "resources"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    procurement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("procurements.id"), index=True)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)  # the offer being tried / used
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # "vm" (one vendor instance), or "cluster": no instance of its own, its nodes are the "vm" rows
    # whose `cluster_id` names it (engine/pipelines/cluster.py). Every node is created and deleted
    # as a resource of its own, each with its own marker.
    resource_type: Mapped[str] = mapped_column(String(20), default="vm", server_default="vm")
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    # The status a deletion ends in: "deleted" for a user delete, "failed" when the engine cleans
    # up a failed provisioning. Only reached once the vendor confirmed the instance is gone.
    final_status: Mapped[str | None] = mapped_column(String(20), default=None)
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    vendor: Mapped[str | None] = mapped_column(String(20), index=True)
    vendor_region: Mapped[str | None] = mapped_column(String(100), default=None)
    region: Mapped[str | None] = mapped_column(String(10), default=None)
    vendor_instance_id: Mapped[str | None] = mapped_column(String(200), default=None)
    vendor_status: Mapped[str | None] = mapped_column(String(100), default=None)
    external_ip: Mapped[str | None] = mapped_column(String(100), default=None)
    ssh_host: Mapped[str | None] = mapped_column(String(200), default=None)
    ssh_port: Mapped[int | None] = mapped_column(Integer, default=None)
    # The login the vendor's image takes (Lambda: ubuntu; Nebula says per instance); None: root.
    ssh_user: Mapped[str | None] = mapped_column(String(64), default=None)
    gpu_type: Mapped[str | None] = mapped_column(String(100), default=None)
    gpu_family: Mapped[str | None] = mapped_column(String(50), default=None)
    gpu_count: Mapped[int | None] = mapped_column(Integer, default=None)
    price_per_hour: Mapped[float | None] = mapped_column(Float, default=None)  # fixed at procurement
    offer_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    ssh_public_key: Mapped[str] = mapped_column(Text)
    cloud_init: Mapped[str | None] = mapped_column(Text, default=None)
    # Engine bookkeeping.
    create_attempted_at: Mapped[datetime | None] = mapped_column(default=None)  # a create may have committed
    # When the create call returned without an answer (timeout, 5xx, lost): the create may still be in
    # transit, so "nothing exists" is only concluded a visibility window after this (engine.md).
    create_unknown_at: Mapped[datetime | None] = mapped_column(default=None)
    # The first "not found" read of an instance that no other observation has confirmed yet: the row
    # ends only when a listing and a second read after a delay agree (engine/absence.py).
    absent_since: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[list[Any]] = mapped_column(JSON, default=list)  # offers tried (spec procurement)
    pending_action: Mapped[str | None] = mapped_column(String(20), default=None)  # start|stop|reboot
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    delete_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    delete_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Times.
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    running_since: Mapped[datetime | None] = mapped_column(default=None)  # vendor-confirmed first running
    ended_at: Mapped[datetime | None] = mapped_column(default=None)  # vendor-confirmed end
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Guardrails (services/budgets.py, engine/autodelete.py): delete at this instant, or once the
    # cost so far reaches spend_limit (USD).
    auto_delete_at: Mapped[datetime | None] = mapped_column(default=None)
    spend_limit: Mapped[float | None] = mapped_column(Float, default=None)
    # Fleets (domain/fleets.py): the fleet this resource is a member of, and when the fleet took note
    # that it stopped counting (deleting or ended), so each loss is handled once.
    fleet_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("fleets.id"), index=True, default=None)
    fleet_noted_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_resources_engine_queue", "status", "next_attempt_at"),
        Index("ix_resources_vendor_instance", "vendor", "vendor_instance_id"),
        # GET /resources: a tenant's newest first (ties by id) read off the index, without a sort.
        Index("ix_resources_tenant_created", "tenant_id", "created_at", "id"),
    )


class ResourceCount(Base):
    """How many resources a tenant has (`GET /resources`' total without counting them) and its
    listing version (moved by every change a listing shows: services/listing.py). Kept by database
    triggers on `resources` and `events` (migrations 0021, 0022), never written by the application."""

    __tablename__ = "resource_counts"
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    resources: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")


# A resource as the ORM loads it, or as the hot-read path returns its columns (services/reads.py):
# the views and the cost arithmetic read the same attribute names from either.
ResourceLike = Resource | Row[Any]


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    vendor: Mapped[str | None] = mapped_column(String(20), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(50))  # status_change | attempt | alert | orphan | ...
    from_status: Mapped[str | None] = mapped_column(String(20), default=None)
    to_status: Mapped[str | None] = mapped_column(String(20), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    fleet_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True, default=None)  # a fleet's own events


class VendorState(Base):
    """Per vendor: health as the last listing showed it, and reconciler bookkeeping."""

    __tablename__ = "vendor_states"
    vendor: Mapped[str] = mapped_column(String(20), primary_key=True)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    degraded_reason: Mapped[str | None] = mapped_column(Text, default=None)
    degraded_since: Mapped[datetime | None] = mapped_column(default=None)
    last_reconciled_at: Mapped[datetime | None] = mapped_column(default=None)
    # Marker-carrying instances first seen without a live resource: instance id -> first seen (ISO).
    orphan_candidates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Instances another gpusupply installation made on this account (their markers name it): counted
    # and shown, never touched.
    foreign_instances: Mapped[int] = mapped_column(Integer, default=0)


class Installation(Base):
    """This installation's identity: one row, made at first start, shared by every process on this
    database. Vendor markers carry its id (vendors/base.py `marker_for`)."""

    __tablename__ = "installation"
    singleton: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobLease(Base):
    """A lease on a periodic job ("reconcile:vast", "catalog:fal"), so one process runs it at a time."""

    __tablename__ = "job_leases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    lock_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    lock_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lock_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)


# ----- cost guardrails and webhooks (docs/cost.md) -------------------------------------------------


class Budget(Base):
    """A tenant's spending limits (USD). One row per tenant that set any."""

    __tablename__ = "budgets"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    max_hourly_spend: Mapped[float | None] = mapped_column(Float, default=None)  # cap on live resources' $/h
    monthly_budget: Mapped[float | None] = mapped_column(Float, default=None)  # per UTC calendar month
    delete_on_exhaustion: Mapped[bool] = mapped_column(Boolean, default=False)
    # Alerts sent: the month ("2026-11") and the highest threshold (80, 100) already alerted in it.
    alert_month: Mapped[str | None] = mapped_column(String(7), default=None)
    alert_level: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Webhook(Base):
    """A tenant's URL that receives signed event deliveries. The secret is stored encrypted."""

    __tablename__ = "webhooks"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)  # event types, or ["*"]
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    secret_encrypted: Mapped[str] = mapped_column(Text)  # Fernet token of the signing secret
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookOutbox(LeaseMixin, Base):
    """An event that may concern webhooks, written in the event's own transaction; the delivery
    job turns it into one `WebhookDelivery` per subscribed webhook and deletes it."""

    __tablename__ = "webhook_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[Event] = relationship(lazy="raise")


class WebhookDelivery(LeaseMixin, Base):
    """One event sent (or being retried) to one webhook: the body, and a log of the attempts."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(Integer, default=None)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt_log: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the latest attempts, oldest first
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_webhook_deliveries_queue", "status", "next_attempt_at"),)


# ----- vendor rate limits shared by every process (db/ratelimits.py) -------------------------------


class RateBucket(Base):
    """A vendor's rate limit for one API key and route group, as a GCRA theoretical arrival time.

    Every process calling the vendor with that key books its slots here, so together they stay
    under the limit. The key is only ever stored as a hash (`vendors.http.key_id`)."""

    __tablename__ = "rate_buckets"
    vendor: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(40), primary_key=True)  # an endpoint group, or "*" for the key
    tat: Mapped[float] = mapped_column(Float)  # seconds since the epoch, on the database's clock


# ----- prices over time (domain/price_history.py, domain/price_alerts.py; docs/prices.md) ----------


class PricePointRow(Base):
    """What one catalog refresh saw in one market (vendor, canonical GPU, GPUs per offer, region
    group, contract type), or such points merged into an hour or a day (`step_seconds`)."""

    __tablename__ = "price_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(20))
    gpu_type: Mapped[str] = mapped_column(String(100))
    gpu_family: Mapped[str] = mapped_column(String(50))
    gpu_count: Mapped[int] = mapped_column(Integer)
    region: Mapped[str] = mapped_column(String(10))
    contract_type: Mapped[str] = mapped_column(String(10))
    step_seconds: Mapped[int] = mapped_column(Integer)  # 0: one refresh; 3600 / 86400: merged
    at: Mapped[datetime] = mapped_column()  # the refresh, or the start of the hour / day
    min_price: Mapped[float] = mapped_column(Float)  # USD per GPU-hour
    median_price: Mapped[float] = mapped_column(Float)
    max_price: Mapped[float] = mapped_column(Float)
    offers: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index("ix_price_points_family_at", "gpu_family", "at"),
        Index("ix_price_points_step_at", "step_seconds", "at"),
    )


class PriceAlert(Base):
    """A tenant's price alert: a get_offers document and a threshold in USD per GPU-hour; with
    `then_procure`, a limit order (the procurement's fields in `procure`)."""

    __tablename__ = "price_alerts"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the normalized get_offers document
    threshold: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(10), default="new")  # new | below | above
    procure: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # then: procure
    procured_count: Mapped[int] = mapped_column(Integer, default=0)
    last_price: Mapped[float | None] = mapped_column(Float, default=None)
    # The newest catalog refresh the alert was evaluated on (it is evaluated once per refresh).
    evaluated_through: Mapped[datetime | None] = mapped_column(default=None)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PriceAlertFiring(Base):
    """One firing of an alert (price.below or price.above), and what it procured."""

    __tablename__ = "price_alert_firings"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("price_alerts.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    at: Mapped[datetime] = mapped_column()
    event_type: Mapped[str] = mapped_column(String(20))  # price.below | price.above
    price: Mapped[float | None] = mapped_column(Float, default=None)  # cheapest match; None: no offer matches
    vendor: Mapped[str | None] = mapped_column(String(20), default=None)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    resource_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)  # why nothing was procured, when not
