"""Resources: what a tenant procured. Listing, reading (with a vendor re-read when stale),
deleting, start/stop/reboot requests and the event history.

The API records intent and the engine does the vendor work (docs/engine.md): a delete sets
`deleting` and returns; the engine deletes on the vendor until the vendor confirms, then marks
the resource `deleted`. Every write here starts by locking the row (an UPDATE first, so SQLite
takes its write lock and PostgreSQL its row lock before anything is read), so a decision is
never made on a status the engine changed a moment ago.

`force` on delete: a delete is normally refused (409) while a start, stop or reboot is in flight;
`force=true` deletes anyway (the pending action is dropped). A resource still pending or
provisioning can always be deleted; in every case the engine confirms with the vendor that no
instance is left before the resource is marked deleted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError, VendorError
from gpusupply.core.states import FINAL_STATUSES, ResourceStatus
from gpusupply.db.models import Event, Resource, utcnow
from gpusupply.db.session import Database, rows_matched
from gpusupply.domain.costs import resource_cost
from gpusupply.domain.events import change_status
from gpusupply.domain.hints import hint
from gpusupply.services import reads
from gpusupply.services.budgets import AutoDeleteValues, apply_auto_delete, auto_delete_values
from gpusupply.services.keys import Principal
from gpusupply.services.listing import ListedPage, ListingPages, listed_cost, read_page
from gpusupply.services.offers import KNOWN_VENDORS, check_page
from gpusupply.vendors.registry import VendorSet

log = logging.getLogger(__name__)

REFRESH_AFTER = timedelta(seconds=30)  # GET /resources/{id} re-reads the vendor when older
IN_FLIGHT_ACTIONS = frozenset({ResourceStatus.STOPPING, ResourceStatus.STARTING, ResourceStatus.REBOOTING})

# action -> (status it needs, status it moves to); the vendor must support it (Capabilities.supports).
# The console offers its buttons from this same table (web/views.available_actions).
ACTIONS: dict[str, tuple[ResourceStatus, ResourceStatus]] = {
    "stop": (ResourceStatus.RUNNING, ResourceStatus.STOPPING),
    "start": (ResourceStatus.STOPPED, ResourceStatus.STARTING),
    "reboot": (ResourceStatus.RUNNING, ResourceStatus.REBOOTING),
}


def ssh_command(external_ip: str | None, ssh_host: str | None, ssh_port: int | None, ssh_user: str | None = None) -> str | None:
    """`ssh USER@IP -p PORT` (root unless the vendor's image logs in as another user); through the
    vendor's SSH host when it proxies SSH."""
    host = ssh_host or external_ip
    if not host:
        return None
    user = ssh_user or "root"
    return f"ssh {user}@{host} -p {ssh_port}" if ssh_port else f"ssh {user}@{host}"


def needs_refresh(resource: Resource, *, force: bool, now: datetime) -> bool:
    """Whether GET /resources/{id} should re-read the vendor first."""
    if resource.status in FINAL_STATUSES or resource.vendor is None or resource.vendor_instance_id is None:
        return False
    return force or resource.last_synced_at is None or now - resource.last_synced_at > REFRESH_AFTER


# ----- reading ----------------------------------------------------------------------------------
def _list_filters(offer_id: UUID | None, status: str | None, vendor: str | None) -> dict[str, Any]:
    """The listing's filters besides the tenant (column -> value), checked."""
    filters: dict[str, Any] = {}
    if offer_id is not None:
        filters["offer_id"] = offer_id
    if status is not None:
        if status not in {s.value for s in ResourceStatus}:
            raise UnprocessableError(
                f"unknown status {status!r}; one of {', '.join(s.value for s in ResourceStatus)}", loc=("query", "status")
            )
        filters["status"] = status
    if vendor is not None:
        if vendor not in KNOWN_VENDORS:
            raise UnprocessableError(f"unknown vendor {vendor!r}; one of {', '.join(KNOWN_VENDORS)}", loc=("query", "vendor"))
        filters["vendor"] = vendor
    return filters


async def list_resources(
    db: Database,
    principal: Principal,
    *,
    offer_id: UUID | None = None,
    status: str | None = None,
    vendor: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Resource], int]:
    """The caller's resources, newest first, and how many match in all."""
    check_page(limit, offset)
    filters = _list_filters(offer_id, status, vendor)
    conditions = [Resource.tenant_id == principal.tenant_id] + [getattr(Resource, k) == v for k, v in filters.items()]
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(Resource).where(*conditions))).scalar_one()
        rows = (
            await session.execute(
                select(Resource)
                .where(*conditions)
                .order_by(Resource.created_at.desc(), Resource.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
        return list(rows), int(total)


async def list_resources_page(
    db: Database,
    principal: Principal,
    *,
    offer_id: UUID | None = None,
    status: str | None = None,
    vendor: str | None = None,
    limit: int = 100,
    offset: int = 0,
    pages: ListingPages | None = None,
) -> tuple[ListedPage, list[float]]:
    """`GET /resources`: the page (services/reads.py) and each listed resource's cost so far now.
    With `pages`, a page kept there while the tenant's listing version holds (services/listing.py)."""
    check_page(limit, offset)
    filters = _list_filters(offer_id, status, vendor)
    tenant_id = principal.tenant_id
    page = await db.read(pages.page(tenant_id, filters, limit, offset) if pages is not None else read_page(tenant_id, filters, limit, offset))
    return page, page.costs(utcnow())


# Built once: composing the expression on every read showed as ~7% of a read's samples (py-spy).
_OWNED = (
    select(Resource)
    .where(Resource.id == bindparam("resource_id"), Resource.tenant_id == bindparam("tenant_id"))
    .execution_options(populate_existing=True)
)


async def _owned(session: AsyncSession, principal: Principal, resource_id: UUID) -> Resource:
    resource = (
        await session.execute(_OWNED, {"resource_id": resource_id, "tenant_id": principal.tenant_id})
    ).scalar_one_or_none()
    if resource is None:
        raise NotFoundError(f"resource {resource_id} not found")
    return resource


class ResourceRefresher(Protocol):
    """Re-reads one resource from its vendor now and stores what it saw. The app passes the
    engine's `sync.refresh_resource`, bound to the process's database, vendors and settings: the
    services never import the engine (docs/architecture.md)."""

    async def __call__(self, resource_id: UUID) -> None: ...


async def get_resource(
    db: Database,
    refresher: ResourceRefresher,
    principal: Principal,
    resource_id: UUID,
    *,
    force_refresh: bool = False,
    refresh_timeout: float = 15.0,
) -> Resource:
    """One resource; re-read from the vendor first (`refresher`) when its last sync is older than
    30 s, or `force_refresh`."""
    return await _read(db, refresher, principal, resource_id, force_refresh, refresh_timeout)


async def get_resource_with_cost(
    db: Database,
    refresher: ResourceRefresher,
    principal: Principal,
    resource_id: UUID,
    *,
    force_refresh: bool = False,
    refresh_timeout: float = 15.0,
) -> tuple[reads.ReadRow, float]:
    """`GET /resources/{id}`: the resource and its cost so far (USD) from one statement
    (services/reads.py); re-read from the vendor first (`refresher`) when its last sync is older
    than 30 s (or `force_refresh`), then read again."""
    row, cost_so_far = await stored_resource_with_cost(db, principal, resource_id)
    if needs_refresh(row, force=force_refresh, now=utcnow()) and await _refresh(refresher, resource_id, refresh_timeout):
        return await stored_resource_with_cost(db, principal, resource_id)
    return row, cost_so_far


async def stored_resource_with_cost(db: Database, principal: Principal, resource_id: UUID) -> tuple[reads.ReadRow, float]:
    """The resource as stored (no vendor re-read) and its cost so far: the answer after a write,
    and the read before and after a vendor re-read."""
    found = await db.read(reads.resource_detail(principal.tenant_id, resource_id))
    if found is None:  # after a re-read this cannot happen (a row is never deleted); never answer another's
        raise NotFoundError(f"resource {resource_id} not found")
    return found.resource, resource_cost(found.resource, found.transitions, utcnow())


async def _read(
    db: Database, refresher: ResourceRefresher, principal: Principal, resource_id: UUID, force_refresh: bool, refresh_timeout: float,
) -> Resource:
    async with db.read_session() as session:
        resource = await _owned(session, principal, resource_id)
        if not needs_refresh(resource, force=force_refresh, now=utcnow()):
            return resource
    if not await _refresh(refresher, resource_id, refresh_timeout):  # the stored view stands
        return resource
    async with db.session() as session:
        return await _owned(session, principal, resource_id)


async def _refresh(refresher: ResourceRefresher, resource_id: UUID, limit_seconds: float) -> bool:
    """Re-read the vendor through `refresher`. A failure keeps the stored view (logged)."""
    try:
        await asyncio.wait_for(refresher(resource_id), limit_seconds)
    except (VendorError, TimeoutError) as exc:
        log.warning("resource refresh failed", extra={"resource_id": str(resource_id), "error": str(exc)})
        return False
    except Exception:
        log.exception("resource refresh crashed", extra={"resource_id": str(resource_id)})
        return False
    return True


async def list_events(
    db: Database, principal: Principal, resource_id: UUID, *, limit: int = 500, offset: int = 0
) -> tuple[list[Event], int]:
    """The resource's history, oldest first."""
    check_page(limit, offset)
    async with db.session() as session:
        await _owned(session, principal, resource_id)
        condition = Event.resource_id == resource_id
        total = (await session.execute(select(func.count()).select_from(Event).where(condition))).scalar_one()
        rows = (
            await session.execute(select(Event).where(condition).order_by(Event.at, Event.id).limit(limit).offset(offset))
        ).scalars()
        return list(rows), int(total)


# ----- writing ----------------------------------------------------------------------------------
async def _lock(session: AsyncSession, principal: Principal, resource_id: UUID) -> Resource:
    """Lock the caller's resource row for this transaction and read it fresh (404 if not theirs)."""
    locked = await session.execute(
        update(Resource)
        .where(Resource.id == resource_id, Resource.tenant_id == principal.tenant_id)
        .values(updated_at=utcnow())
    )
    if rows_matched(locked) != 1:
        raise NotFoundError(f"resource {resource_id} not found")
    return await _owned(session, principal, resource_id)


async def delete_resource(db: Database, principal: Principal, resource_id: UUID, *, force: bool = False) -> Resource:
    """Record the delete; the engine deletes on the vendor and marks it deleted once confirmed.
    A cluster's delete is every node's (each confirmed by the vendor); a node of a live cluster is
    only deleted with its cluster (409 naming it)."""
    async with db.transaction() as session:
        resource = await _lock(session, principal, resource_id)
        if resource.cluster_id is not None:
            await _refuse_node_of_live_cluster(session, principal, resource)
        status = ResourceStatus(resource.status)
        if status == ResourceStatus.DELETING:
            raise ConflictError(f"resource {resource_id} is already being deleted")
        if status in FINAL_STATUSES:
            raise ConflictError(f"resource {resource_id} is already {status.value}")
        if status in IN_FLIGHT_ACTIONS and not force:
            raise ConflictError(
                f"resource {resource_id} is {status.value}; delete when that finishes, or pass force=true to delete now"
            )
        now = utcnow()
        reason = "delete requested" + (" (force)" if force else "")
        _mark_deleting(session, resource, reason, force, now)
        if resource.resource_type == CLUSTER:
            for node in await _lock_nodes(session, principal, resource):
                if ResourceStatus(node.status) not in FINAL_STATUSES and node.status != ResourceStatus.DELETING:
                    _mark_deleting(session, node, f"cluster {resource.name} ({resource.id}): {reason}", force, now)
    hint()
    return resource


def _mark_deleting(session: AsyncSession, resource: Resource, reason: str, force: bool, now: datetime) -> None:
    change_status(session, resource, ResourceStatus.DELETING, reason, data={"force": force}, at=now)
    resource.final_status = ResourceStatus.DELETED.value
    resource.delete_requested_at = now
    resource.next_attempt_at = now
    resource.pending_action = None


CLUSTER = "cluster"


async def _refuse_node_of_live_cluster(session: AsyncSession, principal: Principal, node: Resource) -> None:
    cluster = (
        await session.execute(select(Resource).where(Resource.id == node.cluster_id, Resource.tenant_id == principal.tenant_id))
    ).scalar_one_or_none()
    if cluster is not None and ResourceStatus(cluster.status) not in FINAL_STATUSES:
        raise ConflictError(
            f"resource {node.id} is a node of cluster {cluster.name!r} ({cluster.id}); a cluster lives and is deleted "
            f"whole: DELETE /resources/{cluster.id} deletes every node"
        )


async def _lock_nodes(session: AsyncSession, principal: Principal, cluster: Resource) -> list[Resource]:
    """A cluster's nodes, locked for this transaction (after the cluster: the engine locks in that order too)."""
    await session.execute(
        update(Resource)
        .where(Resource.cluster_id == cluster.id, Resource.tenant_id == principal.tenant_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    found = await session.execute(
        select(Resource)
        .where(Resource.cluster_id == cluster.id, Resource.tenant_id == principal.tenant_id)
        .order_by(Resource.name, Resource.id)
        .execution_options(populate_existing=True)
    )
    return list(found.scalars())


@dataclass(slots=True)
class Link:
    """A resource linked to another: a cluster's node (`member`) or a node's cluster (`member_of`)."""

    resource_id: UUID
    resource_type: str
    status: str
    link_type: str  # member | member_of
    linked_since: datetime | None
    linked_until: datetime | None
    name: str | None


@dataclass(slots=True)
class Members:
    links: list[Link]
    cost_so_far: float | None  # a cluster: its nodes' together; None for anything else
    hourly: float | None  # a cluster: its live nodes' price per hour together


async def cluster_nodes(db: Database, principal: Principal, cluster_id: UUID) -> list[Resource]:
    """Every node of the caller's cluster (each placement's, by name), for the console's cluster page."""
    async with db.read_session() as session:
        found = await session.execute(
            select(Resource)
            .where(Resource.cluster_id == cluster_id, Resource.tenant_id == principal.tenant_id)
            .order_by(Resource.created_at, Resource.name, Resource.id)
        )
        return list(found.scalars())


async def linked_resources(db: Database, principal: Principal, resource: Any) -> Members:
    """What `linked_resources` shows of a resource, and for a cluster its nodes' cost and price."""
    if resource.resource_type == CLUSTER:
        nodes = await db.read(reads.cluster_members(principal.tenant_id, resource.id))
        now = utcnow()
        links = [
            Link(n.resource.id, n.resource.resource_type, n.resource.status, "member", n.resource.created_at, n.resource.ended_at, n.resource.name)
            for n in nodes
        ]
        live = [n.resource for n in nodes if ResourceStatus(n.resource.status) not in FINAL_STATUSES]
        return Members(links, sum(listed_cost(n, now) for n in nodes), sum(float(n.price_per_hour or 0.0) for n in live))
    if resource.cluster_id is None:
        return Members([], None, None)
    async with db.read_session() as session:
        cluster = (
            await session.execute(
                select(Resource.id, Resource.name, Resource.status, Resource.ended_at).where(
                    Resource.id == resource.cluster_id, Resource.tenant_id == principal.tenant_id
                )
            )
        ).one_or_none()
    if cluster is None:
        return Members([], None, None)
    return Members([Link(cluster.id, CLUSTER, cluster.status, "member_of", resource.created_at, cluster.ended_at or resource.ended_at, cluster.name)], None, None)


async def request_action(db: Database, vendors: VendorSet, principal: Principal, resource_id: UUID, action: str) -> Resource:
    """Ask the engine to stop, start or reboot the instance."""
    if action not in ACTIONS:
        raise UnprocessableError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", loc=("path", "action"))
    needed, moving_to = ACTIONS[action]
    async with db.transaction() as session:
        resource = await _lock(session, principal, resource_id)
        if resource.resource_type == CLUSTER:
            return await _cluster_action(session, vendors, principal, resource, action)
        if resource.vendor is None:
            raise ConflictError(f"cannot {action} resource {resource_id}: it has no instance yet (status {resource.status})")
        adapter = vendors.adapters.get(resource.vendor)
        if adapter is None:
            raise ConflictError(f"cannot {action} resource {resource_id}: vendor {resource.vendor} is not enabled here")
        if not adapter.capabilities.supports(action):
            raise ConflictError(f"vendor {resource.vendor} does not support {action}")
        if resource.status != needed:
            raise ConflictError(
                f"cannot {action} resource {resource_id} while it is {resource.status}; {action} needs status {needed.value}"
            )
        now = utcnow()
        change_status(session, resource, moving_to, f"{action} requested", at=now)
        resource.pending_action = action
        resource.next_attempt_at = now
    hint()
    return resource


async def _cluster_action(session: AsyncSession, vendors: VendorSet, principal: Principal, cluster: Resource, action: str) -> Resource:
    """Start, stop or reboot every node of a cluster, if its vendor does that and every node can."""
    needed, moving_to = ACTIONS[action]
    adapter = vendors.adapters.get(cluster.vendor or "")
    if adapter is None:
        raise ConflictError(f"cannot {action} cluster {cluster.id}: vendor {cluster.vendor} is not enabled here")
    if not adapter.capabilities.supports(action):
        raise ConflictError(f"vendor {cluster.vendor} does not support {action}")
    if cluster.status != needed:
        raise ConflictError(f"cannot {action} cluster {cluster.id} while it is {cluster.status}; {action} needs status {needed.value}")
    nodes = await _lock_nodes(session, principal, cluster)
    waiting = [n for n in nodes if n.status != needed]
    if waiting:
        names = ", ".join(f"{n.name} is {n.status}" for n in waiting)
        raise ConflictError(f"cannot {action} cluster {cluster.id}: every node must be {needed.value} ({names})")
    now = utcnow()
    change_status(session, cluster, moving_to, f"{action} requested for every node", at=now)
    cluster.next_attempt_at = now
    for node in nodes:
        change_status(session, node, moving_to, f"{action} requested for cluster {cluster.name}", at=now)
        node.pending_action = action
        node.next_attempt_at = now
    hint()
    return cluster


# ----- auto-delete limits (cost guardrails, docs/cost.md) ----------------------------------------
async def set_auto_delete(db: Database, principal: Principal, resource_id: UUID, fields: dict[str, Any] | None) -> Resource:
    """`PATCH /resources/{id}`: set the resource's auto-delete limits. `fields` is merged (a key given
    as null clears that limit, a missing key keeps it); `None` clears every limit. The engine's
    guardrail job deletes the resource once a limit is reached."""
    now = utcnow()
    values = auto_delete_values(fields, now) if fields is not None else AutoDeleteValues(None, None, True, True)
    async with db.transaction() as session:
        resource = await _lock(session, principal, resource_id)
        if resource.status == ResourceStatus.DELETING or ResourceStatus(resource.status) in FINAL_STATUSES:
            raise ConflictError(f"resource {resource_id} is {resource.status}; its limits can no longer change")
        apply_auto_delete(resource, values)
    return resource
