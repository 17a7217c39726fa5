"""The API's polled reads as single SQLAlchemy Core statements, run through `Database.read` (one
hop to the database, db/reads.py): `GET /resources/{id}`, `GET /resources` and
`GET /offers/{id}/status`.

Each statement reads exactly the columns its answer needs (never the SSH key, cloud-init or the
engine's lease columns) and brings the billing transitions the cost so far needs in the same
statement (a LEFT JOIN on the events), so a read is one round trip instead of two or three.
The rows are SQLAlchemy `Row`s: read-only, with the same attribute names as `Resource`, which is
all the views and the cost functions use. Every statement filters by the caller's tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles

from gpusupply.db.models import Event, OfferRow, Procurement, Resource
from gpusupply.domain.costs import BILLING_STATUSES, Transition

_resources = Resource.__table__
_events = Event.__table__

# What an answer about one resource shows or derives (views.resource_detail, needs_refresh, the
# cost so far).
RESOURCE_COLUMNS = tuple(
    _resources.c[name]
    for name in (
        "id", "tenant_id", "procurement_id", "offer_id", "name", "status", "status_message", "vendor", "vendor_region",
        "region", "vendor_instance_id", "vendor_status", "external_ip", "ssh_host", "ssh_port", "ssh_user", "gpu_type", "gpu_family",
        "gpu_count", "price_per_hour", "offer_snapshot", "attempts", "pending_action", "delete_requested_at",
        "created_at", "running_since", "ended_at", "last_synced_at", "updated_at", "auto_delete_at", "spend_limit",
        "resource_type", "cluster_id",
    )
)
# What a listing shows of each (views.resource_summary) and its cost needs: of the offer snapshot
# (a few KB of JSON, most of a listing's time when parsed for 100 rows) only the storage price.
SUMMARY_COLUMNS = (
    *(
        _resources.c[name]
        for name in (
            "id", "name", "status", "vendor", "vendor_region", "region", "external_ip", "ssh_host", "ssh_port", "ssh_user",
            "gpu_type", "gpu_family", "gpu_count", "offer_id", "price_per_hour", "created_at", "running_since",
            "ended_at", "updated_at", "resource_type", "cluster_id",
        )
    ),
    _resources.c.offer_snapshot[("vendor_data", "storage_per_hour")].label("storage_per_hour"),
)


class _NotIndexed(ColumnElement[Any]):
    """A column SQLite's planner must not pick an index for: `+column` there, the column as is
    elsewhere. SQLite keeps no statistics unless ANALYZE runs, so for `tenant_id = ? AND
    offer_id = ?` it may walk every row of the tenant through the tenant's index instead of the
    one or two rows of the offer (measured: 25 ms instead of well under 1 ms at 2,000 rows)."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        self.column = column
        self.type = column.type


@compiles(_NotIndexed)
def _compile_not_indexed(element: _NotIndexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(_NotIndexed, "sqlite")
def _compile_not_indexed_sqlite(element: _NotIndexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


def _billing_events(resource_id: Any) -> Any:
    return and_(
        _events.c.resource_id == resource_id,
        _events.c.kind == "status_change",
        _events.c.to_status.in_(BILLING_STATUSES),
    )


@dataclass(slots=True)
class ResourceRead:
    resource: Row[Any]  # RESOURCE_COLUMNS or SUMMARY_COLUMNS, by name
    transitions: list[Transition]  # to running / stopped, oldest first


def _group(rows: Sequence[Row[*tuple[Any, ...]]], width: int) -> list[ResourceRead]:
    """Rows of (`width` resource columns..., event at, event to_status, ...) into one read per
    resource, in order."""
    reads: list[ResourceRead] = []
    for row in rows:
        resource_id = row[0]
        if not reads or reads[-1].resource[0] != resource_id:
            reads.append(ResourceRead(row, []))
        at, to_status = row[width], row[width + 1]
        if at is not None:
            reads[-1].transitions.append(Transition(at, to_status))
    return reads


# ----- one resource ----------------------------------------------------------------------------
_DETAIL = (
    select(*RESOURCE_COLUMNS, _events.c.at, _events.c.to_status)
    .select_from(_resources.outerjoin(_events, _billing_events(_resources.c.id)))
    .where(_resources.c.id == bindparam("resource_id"), _resources.c.tenant_id == bindparam("tenant_id"))
    .order_by(_events.c.at, _events.c.id)
)


def resource_detail(tenant_id: UUID, resource_id: UUID) -> Any:
    """A read: the tenant's resource with its billing transitions, or None."""

    def read(connection: Connection) -> ResourceRead | None:
        found = _group(connection.execute(_DETAIL, {"resource_id": resource_id, "tenant_id": tenant_id}).all(), len(RESOURCE_COLUMNS))
        return found[0] if found else None

    return read


# ----- a page of resources ---------------------------------------------------------------------
PAGE_FILTERS = ("offer_id", "status", "vendor")  # besides the tenant, each an equality


_TRANSITIONS = (
    select(_events.c.resource_id, _events.c.at, _events.c.to_status)
    .where(
        _events.c.resource_id.in_(bindparam("resource_ids", expanding=True)),
        _events.c.kind == "status_change",
        _events.c.to_status.in_(BILLING_STATUSES),
    )
    .order_by(_events.c.at, _events.c.id)
)


@lru_cache(maxsize=2 ** len(PAGE_FILTERS))
def _page_statements(filters: tuple[str, ...]) -> tuple[Any, Any]:
    """(the page with its total, the count alone) for this set of filters, built once:
    composing them per request showed as a large share of a listing's time."""
    conditions = [_resources.c.tenant_id == bindparam("tenant_id")]
    conditions += [_resources.c[name] == bindparam(name) for name in filters]
    counting = select(func.count()).select_from(_resources).where(*conditions)
    page = (
        select(*SUMMARY_COLUMNS, counting.scalar_subquery().label("total"))
        .where(*conditions)
        .order_by(_resources.c.created_at.desc(), _resources.c.id)  # ix_resources_tenant_created
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    return page, counting


def resource_page(tenant_id: UUID, filters: dict[str, Any], limit: int, offset: int) -> Any:
    """A read: (the page, newest first, each with its billing transitions; how many match in
    all). `filters`: PAGE_FILTERS' values. The total rides along as a scalar subquery, which
    both databases evaluate once; the transitions are a second statement by the page's ids (as
    a join, PostgreSQL's planner hashed every event of the table for a page of 100)."""
    page, counting = _page_statements(tuple(name for name in PAGE_FILTERS if name in filters))
    values = {"tenant_id": tenant_id, **filters}

    def read(connection: Connection) -> tuple[list[ResourceRead], int]:
        rows = connection.execute(page, {**values, "limit": limit, "offset": offset}).all()
        if not rows:  # an empty page (offset past the end) carries no total: count alone
            return [], (0 if offset == 0 else int(connection.execute(counting, values).scalar_one()))
        found = {row.id: ResourceRead(row, []) for row in rows}
        for resource_id, at, to_status in connection.execute(_TRANSITIONS, {"resource_ids": list(found)}):
            found[resource_id].transitions.append(Transition(at, to_status))
        return list(found.values()), int(rows[0].total)

    return read


# ----- a cluster's nodes, and a node's cluster -------------------------------------------------
_MEMBERS = (
    select(*SUMMARY_COLUMNS)
    .where(_resources.c.tenant_id == bindparam("tenant_id"), _resources.c.cluster_id == bindparam("cluster_id"))
    .order_by(_resources.c.name, _resources.c.id)
)


def cluster_members(tenant_id: UUID, cluster_id: UUID) -> Any:
    """A read: the nodes of the tenant's cluster (SUMMARY_COLUMNS), each with its billing transitions."""

    def read(connection: Connection) -> list[ResourceRead]:
        rows = connection.execute(_MEMBERS, {"tenant_id": tenant_id, "cluster_id": cluster_id}).all()
        found = {row.id: ResourceRead(row, []) for row in rows}
        if found:
            for resource_id, at, to_status in connection.execute(_TRANSITIONS, {"resource_ids": list(found)}):
                found[resource_id].transitions.append(Transition(at, to_status))
        return list(found.values())

    return read


# ----- the status of a procured offer ----------------------------------------------------------
_procurements = Procurement.__table__
_offers = OfferRow.__table__
_FIRST_PROCUREMENT = (
    select(_procurements.c.id, _procurements.c.failure_reason, _procurements.c.created_at, _procurements.c.procured_at)
    .where(_NotIndexed(_procurements.c.tenant_id) == bindparam("tenant_id"), _procurements.c.offer_id == bindparam("offer_id"))
    .order_by(_procurements.c.created_at)
    .limit(1)
    .subquery("first_procurement")
)
# What the status shows of each resource (views.offer_status_out, procurement._status_view).
_STATUS_RESOURCE_COLUMNS = tuple(
    _resources.c[name]
    for name in (
        "id", "status", "status_message", "external_ip", "ssh_host", "ssh_port", "ssh_user", "running_since", "vendor_instance_id",
        "resource_type", "name",
    )
)
_ONE = select(literal_column("1").label("one")).subquery("one")
# One row per resource of the tenant's procurement of the offer (or one row of NULLs for them),
# each carrying the offer row and the tenant's first procurement of it, both possibly NULL.
_OFFER_STATUS = (
    select(
        _offers.c.status.label("offer_status"), _offers.c.expires_at.label("offer_expires_at"),
        _offers.c.data["fetched_at"].as_string().label("offer_fetched_at"),
        _FIRST_PROCUREMENT.c.id.label("procurement_id"),
        _FIRST_PROCUREMENT.c.failure_reason.label("procurement_failure_reason"),
        _FIRST_PROCUREMENT.c.created_at.label("procurement_created_at"),
        _FIRST_PROCUREMENT.c.procured_at.label("procurement_procured_at"),
        *_STATUS_RESOURCE_COLUMNS,
    )
    .select_from(
        _ONE.outerjoin(_offers, _offers.c.id == bindparam("offer_id"))
        .outerjoin(_FIRST_PROCUREMENT, true())
        .outerjoin(
            _resources,
            and_(
                _NotIndexed(_resources.c.tenant_id) == bindparam("tenant_id"),
                or_(_resources.c.offer_id == bindparam("offer_id"), _resources.c.procurement_id == _FIRST_PROCUREMENT.c.id),
            ),
        )
    )
    .order_by(_resources.c.created_at, _resources.c.id)
)


def offer_status(tenant_id: UUID, offer_id: UUID) -> Any:
    """A read: the rows of `_OFFER_STATUS` (at least one)."""

    def read(connection: Connection) -> Sequence[Row[*tuple[Any, ...]]]:
        return connection.execute(_OFFER_STATUS, {"tenant_id": tenant_id, "offer_id": offer_id}).all()

    return read
