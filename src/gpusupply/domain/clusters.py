"""What the procurement service and the engine both know about clusters: a cluster resource's
node rows, written all at once (by offer in the procurement's transaction, by spec when the
engine picks a placement), and which of a cluster's nodes belong to its current placement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.offers import Offer, node_offer, offer_to_dict
from gpusupply.core.states import ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.domain.events import add_event

CLUSTER = "cluster"  # Resource.resource_type of a cluster; its nodes are "vm"


def add_nodes(session: AsyncSession, cluster: Resource, offer: Offer, offer_id: UUID | None, now: datetime) -> list[Resource]:
    """Place the cluster on `offer` (a cluster offer): one pending node row per node, each created
    from the node offer under a marker of its own (its resource id), with its "created as pending"
    event. The cluster row itself bills nothing from now on: its nodes do."""
    node = node_offer(offer)
    cluster.resource_type = CLUSTER
    cluster.offer_id = offer_id
    cluster.vendor, cluster.vendor_region, cluster.region = offer.vendor, offer.vendor_region, offer.region
    cluster.gpu_type, cluster.gpu_family, cluster.gpu_count = offer.gpu_type, offer.gpu_family, offer.gpu_count
    cluster.offer_snapshot = offer_to_dict(offer)
    cluster.price_per_hour = 0.0
    nodes = [
        Resource(
            id=uuid4(),
            tenant_id=cluster.tenant_id,
            procurement_id=cluster.procurement_id,
            cluster_id=cluster.id,
            resource_type="vm",
            name=f"{cluster.name}-node-{index}",
            status=ResourceStatus.PENDING.value,
            ssh_public_key=cluster.ssh_public_key,
            cloud_init=cluster.cloud_init,
            offer_id=offer_id,
            vendor=node.vendor,
            vendor_region=node.vendor_region,
            region=node.region,
            gpu_type=node.gpu_type,
            gpu_family=node.gpu_family,
            gpu_count=node.gpu_count,
            price_per_hour=node.total_price_per_hour,
            offer_snapshot=offer_to_dict(node),
            attempts=[],
            retry_count=0,
            delete_alerted=False,
            created_at=now,
            updated_at=now,
            next_attempt_at=now,
        )
        for index in range(1, offer.node_count + 1)
    ]
    session.add_all(nodes)
    for row in nodes:
        event = add_event(session, kind="status_change", resource=row, reason=f"node of cluster {cluster.name} ({cluster.id})", at=now)
        event.to_status = ResourceStatus.PENDING.value
    return nodes


def current_nodes(cluster: Resource, nodes: Sequence[Resource]) -> list[Resource]:
    """The nodes of the cluster's current placement (a spec's earlier placements failed over)."""
    return [n for n in nodes if n.offer_id == cluster.offer_id]


def cluster_name(cluster_id: object, *names: str | None) -> str:
    """The name given (cluster_name, else resource_name), or one made from the id."""
    return next((n for n in names if n), f"cluster-{str(cluster_id)[:8]}")
