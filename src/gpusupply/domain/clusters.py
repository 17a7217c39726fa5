"""What the procurement service and the engine both know about clusters: which of a cluster's
nodes belong to its current placement, and its name. Its node rows are written all at once with
the rest of a procurement's intent (domain/intents.add_cluster_nodes)."""

from __future__ import annotations

from collections.abc import Sequence

from gpusupply.db.models import Resource

CLUSTER = "cluster"  # Resource.resource_type of a cluster; its nodes are "vm"


def current_nodes(cluster: Resource, nodes: Sequence[Resource]) -> list[Resource]:
    """The nodes of the cluster's current placement (a spec's earlier placements failed over)."""
    return [n for n in nodes if n.offer_id == cluster.offer_id]


def cluster_name(cluster_id: object, *names: str | None) -> str:
    """The name given (cluster_name, else resource_name), or one made from the id."""
    return next((n for n in names if n), f"cluster-{str(cluster_id)[:8]}")
