"""Procurement intents: the `procurements` and `resources` rows a procurement writes before any
vendor hears of it (docs/engine.md, "Procure: exactly one create"), and the capacity check of a
spec. Shared by `POST /procure_offer` (services/procurement.py) and the fleet job, which adds a
fleet's members as ordinary procurements by spec (engine/fleets.py): one path, one budget check.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import ConflictError, ServiceUnavailable
from gpusupply.core.gpus import canonical_model
from gpusupply.core.offers import Offer, OfferQuery, node_offer, offer_to_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import OfferRow, Procurement, Resource
from gpusupply.db.session import rows_matched
from gpusupply.domain.catalog import OfferCatalog
from gpusupply.domain.clusters import CLUSTER
from gpusupply.domain.events import add_event
from gpusupply.domain.guardrails import check_procurement, spec_price_bound

STATUS_IN_PROGRESS = "provisioning_in_progress"


def new_resource(
    tenant_id: UUID,
    procurement_id: UUID,
    ssh_public_key: str,
    cloud_init: str | None,
    name: str | None,
    now: datetime,
    *,
    fleet_id: UUID | None = None,
) -> Resource:
    return Resource(
        id=uuid4(),
        tenant_id=tenant_id,
        procurement_id=procurement_id,
        name=name,
        status=ResourceStatus.PENDING.value,
        ssh_public_key=ssh_public_key,
        cloud_init=cloud_init,
        attempts=[],
        retry_count=0,
        delete_alerted=False,
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
        fleet_id=fleet_id,
    )


async def claim_offer(session: AsyncSession, offer_id: UUID, tenant_id: UUID, now: datetime, *, unexpired: bool = False) -> bool:
    """Take a catalog offer for a procurement, in the caller's transaction (a compare-and-set: of
    two concurrent claims of one offer exactly one wins). False when it is not `available` (taken
    first, or gone), or with `unexpired` past its `expires_at`: a user's procure of an offer they
    saw must not take a stale one, while the engine claims the offers it has just read."""
    conditions = [OfferRow.id == offer_id, OfferRow.status == "available"]
    if unexpired:
        conditions.append(OfferRow.expires_at > now)
    claimed = await session.execute(
        update(OfferRow)
        .where(*conditions)
        .values(status="procured", procured_at=now, procured_by=tenant_id)
        .execution_options(synchronize_session=False)
    )
    return rows_matched(claimed) == 1


def fill_from_offer(resource: Resource, offer_id: UUID | None, offer: Offer) -> None:
    """What a resource takes from the offer it is created from."""
    resource.offer_id = offer_id
    resource.vendor, resource.vendor_region, resource.region = offer.vendor, offer.vendor_region, offer.region
    resource.gpu_type, resource.gpu_family, resource.gpu_count = offer.gpu_type, offer.gpu_family, offer.gpu_count
    resource.price_per_hour = offer.total_price_per_hour
    resource.offer_snapshot = offer_to_dict(offer)


def add_cluster_nodes(session: AsyncSession, cluster: Resource, offer: Offer, offer_id: UUID | None, now: datetime) -> list[Resource]:
    """Place the cluster on `offer` (a cluster offer): one pending node row per node, each created
    from the node offer under a marker of its own (its resource id), with its "created as pending"
    event. The cluster row itself bills nothing from now on: its nodes do."""
    cluster.resource_type = CLUSTER
    fill_from_offer(cluster, offer_id, offer)
    cluster.price_per_hour = 0.0
    node = node_offer(offer)
    nodes = []
    for index in range(1, offer.node_count + 1):
        row = new_resource(cluster.tenant_id, cluster.procurement_id, cluster.ssh_public_key, cluster.cloud_init,
                           f"{cluster.name}-node-{index}", now)
        row.resource_type, row.cluster_id = "vm", cluster.id
        fill_from_offer(row, offer_id, node)
        nodes.append(row)
    session.add_all(nodes)
    for row in nodes:
        event = add_event(session, kind="status_change", resource=row, reason=f"node of cluster {cluster.name} ({cluster.id})", at=now)
        event.to_status = ResourceStatus.PENDING.value
    return nodes


def spec_procurement(tenant_id: UUID, document: dict[str, Any], now: datetime, *, idempotency_key: str | None = None, fingerprint: str | None = None) -> Procurement:
    """A procurement by spec (`document`: a normalized get_offers document)."""
    return Procurement(
        id=uuid4(),
        tenant_id=tenant_id,
        offer_id=None,
        spec=document,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        status=STATUS_IN_PROGRESS,
        created_at=now,
        procured_at=now,
    )


def fill_from_query(resource: Resource, query: OfferQuery) -> None:
    """What a spec says of the GPU before an offer is chosen."""
    model = canonical_model(query.gpu_canonical) if query.gpu_canonical else None
    resource.gpu_type = query.gpu_canonical
    resource.gpu_family = model.family if model else query.gpu_family
    resource.gpu_count = query.gpu_count


async def write_intent(
    session: AsyncSession, procurement: Procurement, resource: Resource, reason: str, *, cluster_offer: Offer | None = None
) -> dict[str, Any]:
    """Check the tenant's budget (402 `BudgetExceeded`), then add both rows and the first event
    ("created as pending"), and for a cluster offer every node's row too (domain/clusters.py), all in
    the caller's one transaction, before the engine makes any vendor call. Returns the
    procurement's answer, stored on it for replays."""
    # Guardrails (docs/cost.md): the tenant's budget must allow the price (by spec: its bound).
    if cluster_offer is not None:
        bound: float | None = cluster_offer.total_price_per_hour
    else:
        bound = resource.price_per_hour if resource.price_per_hour is not None else spec_price_bound(procurement.spec)
    await check_procurement(session, procurement.tenant_id, bound, procurement.created_at)
    session.add(procurement)
    await session.flush()  # the resource's foreign key needs the procurement row first
    session.add(resource)
    event = add_event(session, kind="status_change", resource=resource, reason=reason, at=resource.created_at)
    event.to_status = ResourceStatus.PENDING.value
    nodes = add_cluster_nodes(session, resource, cluster_offer, resource.offer_id, resource.created_at) if cluster_offer is not None else []
    response = {
        "offer_id": str(procurement.offer_id) if procurement.offer_id else None,
        "status": STATUS_IN_PROGRESS,
        "procured_at": procurement.procured_at.isoformat() if procurement.procured_at else None,
        "resource_ids": [str(r.id) for r in (resource, *nodes)],
        "error": None,
    }
    procurement.response = response
    return response


# Loosening one condition at a time tells the caller which one leaves the spec without offers.
_RELAXATIONS: tuple[tuple[str, str], ...] = (
    ("max_price_per_gpu_hour", "compute.max_price_per_gpu_hour"),
    ("vendor", "vendor"),
    ("region", "region"),
    ("contract_type", "compute.contract_type"),
    ("gpu_count", "compute.gpu_count"),
)


async def check_capacity(catalog: OfferCatalog, query: OfferQuery) -> None:
    """Refuse a spec that matches no offer now, saying which condition empties it: 409, or 503
    while some vendor's catalog cannot be read."""
    found = await catalog.search(query, limit=1)
    if found.total:
        return
    wanted = query.gpu_canonical or query.gpu_family
    if found.partial:
        failing = "; ".join(f"{vendor}: {why}" for vendor, why in sorted(found.failed_vendors.items()))
        raise ServiceUnavailable(
            f"no offer matches the spec among the catalogs read, and some vendors' offers cannot be read now ({failing}); "
            "retry later, or set wait_for_capacity: true to let the engine wait for capacity"
        )
    reasons = []
    for field, name in _RELAXATIONS:
        if getattr(query, field) is None:
            continue
        loosened = await catalog.search(replace(query, **{field: None}), limit=1)
        if loosened.total:
            cheapest = loosened.offers[0].offer
            reasons.append(
                f"without {name} {loosened.total} would (cheapest: {cheapest.gpu_count}x {cheapest.gpu_family} on "
                f"{cheapest.vendor} at ${cheapest.gpu_price_per_hour:.3f}/GPU-hour)"
            )
    why = "; ".join(reasons) if reasons else f"no vendor lists {wanted} offers now"
    raise ConflictError(
        f"no offer matches the spec now ({why}); change the spec, or set wait_for_capacity: true to wait for capacity"
    )
