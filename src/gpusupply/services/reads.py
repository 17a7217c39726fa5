"""The API's polled reads as single SQLAlchemy Core statements, run through `Database.read` (on
the driver's own connection, db/reads.py): `GET /resources/{id}`, `GET /resources` and
`GET /offers/{id}/status`.

Each statement reads exactly the columns its answer needs (never the SSH key, cloud-init or the
engine's lease columns) and brings the billing transitions the cost so far needs in the same
statement (a LEFT JOIN on the events), so a read is one round trip instead of two or three.
The rows are named tuples (db/reads.py): read-only, with the same attribute names as `Resource`,
which is all the views and the cost functions use. Every statement filters by the caller's tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from gpusupply.core.states import FINAL_STATUSES, ResourceStatus
from gpusupply.db.models import Event, Fleet, OfferRow, Procurement, Resource, ResourceCount
from gpusupply.db.reads import Fetch, ReadRow
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
        "fleet_id", "resource_type", "cluster_id",
    )
)
# What a listing shows of each (views.resource_list_json) and its cost needs. The offer snapshot's
# storage price (the stopped rate of some vendors) is read only for the page's resources that
# were ever stopped: extracting it from every row's snapshot was a fifth of the page's SQL.
SUMMARY_COLUMNS = tuple(
    _resources.c[name]
    for name in (
        "id", "name", "status", "vendor", "vendor_region", "region", "external_ip", "ssh_host", "ssh_port", "ssh_user",
        "gpu_type", "gpu_family", "gpu_count", "offer_id", "price_per_hour", "created_at", "running_since",
        "ended_at", "updated_at", "resource_type", "cluster_id",
    )
)
_STORAGE_PRICES = select(
    _resources.c.id, _resources.c.offer_snapshot[("vendor_data", "storage_per_hour")].label("storage_per_hour")
).where(_resources.c.id.in_(bindparam("resource_ids", expanding=True)))


class _NotIndexed(ColumnElement[Any]):
    """A column SQLite's planner must not pick an index for: `+column` there, the column as is
    elsewhere. SQLite keeps no statistics unless ANALYZE runs, so for `tenant_id = ? AND
    offer_id = ?` it may walk every row of the tenant through the tenant's index instead of the
    one or two rows of the offer (measured: 25 ms instead of well under 1 ms at 2,000 rows)."""

    # Its cache key is its column's: without one SQLAlchemy compiles every statement holding it
    # again on each execution (the offer status: about 1 ms a read, 40 times its SQL).
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

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
    resource: ReadRow  # RESOURCE_COLUMNS or SUMMARY_COLUMNS, by name
    transitions: list[Transition]  # to running / stopped, oldest first
    storage_per_hour: Any = None  # a listed resource's offer `vendor_data.storage_per_hour`, once stopped


def _group(rows: Sequence[ReadRow], width: int) -> list[ResourceRead]:
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
_fleets = Fleet.__table__
# A fleet member's answer links to its fleet (views.fleet_links): its name and status ride along.
_FLEET_COLUMNS = (_fleets.c.name.label("fleet_name"), _fleets.c.status.label("fleet_status"))
_DETAIL = (
    select(*RESOURCE_COLUMNS, *_FLEET_COLUMNS, _events.c.at, _events.c.to_status)
    .select_from(
        _resources.outerjoin(_fleets, _fleets.c.id == _resources.c.fleet_id).outerjoin(_events, _billing_events(_resources.c.id))
    )
    .where(_resources.c.id == bindparam("resource_id"), _resources.c.tenant_id == bindparam("tenant_id"))
    .order_by(_events.c.at, _events.c.id)
)


def resource_detail(tenant_id: UUID, resource_id: UUID) -> Any:
    """A read: the tenant's resource with its billing transitions, or None."""

    async def read(fetch: Fetch) -> ResourceRead | None:
        found = _group(await fetch(_DETAIL, {"resource_id": resource_id, "tenant_id": tenant_id}), len(RESOURCE_COLUMNS) + len(_FLEET_COLUMNS))
        return found[0] if found else None

    return read


# ----- a page of resources ---------------------------------------------------------------------
PAGE_FILTERS = ("offer_id", "status", "vendor")  # besides the tenant, each an equality


# The transitions a listed resource's cost reads (domain/costs.py), by the page's ids: those after
# billing started (the start itself sits at `running_since`), and all of a final row without
# `ended_at` (its end is its last one). A resource that has run without a stop has none, so most
# pages read no event. (By the ids the page read, not by its conditions again: a resource inserted
# between the two statements would shift the page.)
_TRANSITIONS = (
    select(_events.c.resource_id, _events.c.at, _events.c.to_status)
    .join(_resources, _resources.c.id == _events.c.resource_id)
    .where(
        _events.c.resource_id.in_(bindparam("resource_ids", expanding=True)),
        _events.c.kind == "status_change",
        _events.c.to_status.in_(BILLING_STATUSES),
        _resources.c.running_since.is_not(None),
        or_(
            _events.c.at > _resources.c.running_since,
            and_(_resources.c.ended_at.is_(None), _resources.c.status.in_(sorted(s.value for s in FINAL_STATUSES))),
        ),
    )
    .order_by(_events.c.at, _events.c.id)
)
_resource_counts = ResourceCount.__table__
# The tenant's kept count (migration 0021's triggers): the unfiltered total without counting rows.
_KEPT_COUNT = select(func.coalesce(_resource_counts.c.resources, 0)).where(_resource_counts.c.tenant_id == bindparam("tenant_id"))


@lru_cache(maxsize=2 ** len(PAGE_FILTERS))
def _page_statements(filters: tuple[str, ...]) -> tuple[Any, Any]:
    """(the page with its total, the total alone) for this set of filters, built once:
    composing them per request showed as a large share of a listing's time."""
    conditions = [_resources.c.tenant_id == bindparam("tenant_id")]
    conditions += [_resources.c[name] == bindparam(name) for name in filters]
    total = select(func.count()).select_from(_resources).where(*conditions) if filters else _KEPT_COUNT
    page = (
        select(*SUMMARY_COLUMNS, total.scalar_subquery().label("total"))
        .where(*conditions)
        # Read in the order of ix_resources_tenant_created (tenant_id, created_at, id), backwards.
        .order_by(_resources.c.created_at.desc(), _resources.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    return page, total


def resource_page(tenant_id: UUID, filters: dict[str, Any], limit: int, offset: int) -> Any:
    """A read: (the page, newest first, each with its billing transitions; how many match in
    all). `filters`: PAGE_FILTERS' values. The total rides along as a scalar subquery, which
    both databases evaluate once: without filters the tenant's kept count, else a count. The
    transitions are a second statement by the page's ids (as a join, PostgreSQL's planner hashed
    every event of the table for a page of 100)."""
    page, total = _page_statements(tuple(name for name in PAGE_FILTERS if name in filters))
    values = {"tenant_id": tenant_id, **filters, "limit": limit, "offset": offset}

    async def read(fetch: Fetch) -> tuple[list[ResourceRead], int]:
        rows = await fetch(page, values)
        if not rows:  # an empty page (offset past the end) carries no total: count alone
            if offset == 0:
                return [], 0
            counted = await fetch(total, values)
            return [], int(counted[0][0]) if counted else 0
        return await _with_costs_inputs(fetch, rows), int(rows[0].total)

    return read


async def _with_costs_inputs(fetch: Fetch, rows: Sequence[ReadRow]) -> list[ResourceRead]:
    """Listed rows (SUMMARY_COLUMNS) with what their cost needs: their billing transitions, and
    the storage price of those ever stopped (a statement by ids each, only when there are some)."""
    found = {row.id: ResourceRead(row, []) for row in rows}
    if not found:
        return []
    stopped = set()
    for resource_id, at, to_status in await fetch(_TRANSITIONS, {"resource_ids": list(found)}):
        found[resource_id].transitions.append(Transition(at, to_status))
        if to_status == ResourceStatus.STOPPED.value:
            stopped.add(resource_id)
    if stopped:
        for resource_id, storage_per_hour in await fetch(_STORAGE_PRICES, {"resource_ids": sorted(stopped)}):
            found[resource_id].storage_per_hour = storage_per_hour
    return list(found.values())


# ----- a cluster's nodes, and a node's cluster -------------------------------------------------
_MEMBERS = (
    select(*SUMMARY_COLUMNS)
    .where(_resources.c.tenant_id == bindparam("tenant_id"), _resources.c.cluster_id == bindparam("cluster_id"))
    .order_by(_resources.c.name, _resources.c.id)
)


def cluster_members(tenant_id: UUID, cluster_id: UUID) -> Any:
    """A read: the nodes of the tenant's cluster (SUMMARY_COLUMNS), each with its billing transitions."""

    async def read(fetch: Fetch) -> list[ResourceRead]:
        return await _with_costs_inputs(fetch, await fetch(_MEMBERS, {"tenant_id": tenant_id, "cluster_id": cluster_id}))

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

    async def read(fetch: Fetch) -> Sequence[Any]:
        return await fetch(_OFFER_STATUS, {"tenant_id": tenant_id, "offer_id": offer_id})

    return read
