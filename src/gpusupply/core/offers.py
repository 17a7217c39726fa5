"""The one offer model every vendor maps onto, the query users send, and pure matching.

`Offer` is what an adapter returns; `OfferQuery` is a parsed `get_offers` body; `matches` is the
single predicate that says whether an offer fits a query; `offer_to_dict` / `offer_from_dict` are
an offer's JSON form (stored offers, snapshots, a procurement's offer). Indexes (domain/offer_index.py) may
pre-filter for speed, but every answer must agree with `matches`.

Clusters (docs/api.md, "Clusters"): an offer whose vendor can place several identical nodes
together says how many (`cluster_max_nodes`) and over which fabric (`infiniband_bandwidth_gbps`).
A cluster offer of N such nodes is derived from it at search time (`cluster_offer`), never stored
per N in a catalog; `node_offer` gives back what each node is created from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gpusupply.core.regions import RegionGroup

ContractType = Literal["ondemand", "spot"]
CONTRACT_TYPES: tuple[ContractType, ...] = ("ondemand", "spot")
Interconnect = Literal["infiniband", "any"]
INTERCONNECTS: tuple[Interconnect, ...] = ("infiniband", "any")
# `deployment_type` of an offer: one machine, nodes on one InfiniBand fabric, or nodes in one region.
DEPLOYMENT_VM = "vm"
DEPLOYMENT_INFINIBAND = "infiniband-cluster"
DEPLOYMENT_CO_LOCATED = "co-located-cluster"


@dataclass(slots=True)
class Offer:
    vendor: str  # "vast" | "fal" | "nebula" | "lambda"
    vendor_offer_id: str  # the vendor's id for what create needs (ask id, product id, instance type+region)
    gpu_type: str  # canonical name, e.g. nvidia-h100-sxm5-80gb
    gpu_family: str  # e.g. H100
    gpu_count: int
    gpu_memory_gb: float
    gpu_price_per_hour: float  # USD per GPU-hour, boot disk included
    total_price_per_hour: float  # USD per hour for the whole offer
    contract_type: ContractType
    vendor_region: str
    region: RegionGroup
    fetched_at: datetime
    gpu_known: bool = True
    vcpu_count: float | None = None
    memory_gb: float | None = None
    disk_gb: float | None = None
    country: str | None = None
    available: bool = True
    # What the adapter needs to create from this offer (ask id, product id, image id...).
    vendor_data: dict[str, Any] = field(default_factory=dict)
    # Clusters. On a node offer: how many identical nodes of it the vendor can place together now
    # (0: none; the adapter says why), and the fabric between them (0: no InfiniBand). On a
    # cluster offer: node_count > 1, gpu_count and total_price_per_hour cover every node.
    node_count: int = 1
    cluster_max_nodes: int = 0
    infiniband_bandwidth_gbps: float = 0.0


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """A parsed, validated `get_offers` body. Exactly one of gpu_family / gpu_canonical is set."""

    gpu_family: str | None = None
    gpu_canonical: str | None = None
    gpu_count: int | None = None
    max_price_per_gpu_hour: float | None = None
    contract_type: ContractType | None = None
    vendor: str | None = None
    region: RegionGroup | None = None
    node_count: int | None = None  # extension: exactly this many nodes (1: single machines only)
    interconnect: Interconnect | None = None  # extension: "infiniband" asks for an InfiniBand cluster


def matches(offer: Offer, query: OfferQuery) -> bool:
    if not offer.available:
        return False
    if query.node_count is not None and offer.node_count != query.node_count:
        return False
    if query.interconnect == "infiniband" and not is_infiniband_cluster(offer):
        return False
    if query.gpu_canonical is not None and offer.gpu_type != query.gpu_canonical:
        return False
    if query.gpu_family is not None and offer.gpu_family != query.gpu_family:
        return False
    if query.gpu_count is not None and offer.gpu_count != query.gpu_count:
        return False
    if query.max_price_per_gpu_hour is not None and offer.gpu_price_per_hour > query.max_price_per_gpu_hour:
        return False
    if query.contract_type is not None and offer.contract_type != query.contract_type:
        return False
    if query.vendor is not None and offer.vendor != query.vendor:
        return False
    return query.region is None or offer.region == query.region


def price_key(offer: Offer) -> tuple[float, float, str, str]:
    """Sort order of every offer list: cheapest per GPU-hour first, then cheapest in total."""
    return (offer.gpu_price_per_hour, offer.total_price_per_hour, offer.vendor, offer.vendor_offer_id)


# ----- clusters ----------------------------------------------------------------------------------
def is_infiniband_cluster(offer: Offer) -> bool:
    return offer.node_count > 1 and offer.infiniband_bandwidth_gbps > 0


def deployment_type(offer: Offer) -> str:
    if offer.node_count <= 1:
        return DEPLOYMENT_VM
    return DEPLOYMENT_INFINIBAND if offer.infiniband_bandwidth_gbps > 0 else DEPLOYMENT_CO_LOCATED


def wants_clusters(query: OfferQuery, largest_node_gpus: int) -> bool:
    """Whether a search answers cluster offers: asked for by node count or InfiniBand, or asking
    for more GPUs than any single node of that GPU has (`largest_node_gpus`)."""
    if query.node_count is not None:
        return query.node_count > 1
    if query.interconnect == "infiniband":
        return True
    return query.gpu_count is not None and query.gpu_count > largest_node_gpus


def cluster_nodes(node: Offer, query: OfferQuery) -> int | None:
    """How many nodes of `node` make the cluster the query asks for, if the vendor can place that
    many together now; None when no cluster of this offer fits (node_count x gpus_per_node = gpu_count)."""
    if node.node_count != 1 or node.cluster_max_nodes < 2 or query.gpu_count is None:
        return None
    nodes, rest = divmod(query.gpu_count, node.gpu_count)
    if rest or nodes < 2 or nodes > node.cluster_max_nodes:
        return None
    if query.node_count is not None and nodes != query.node_count:
        return None
    if query.interconnect == "infiniband" and node.infiniband_bandwidth_gbps <= 0:
        return None
    return nodes


def cluster_offer(node: Offer, nodes: int) -> Offer:
    """The offer of `nodes` identical nodes of `node`, placed together: same per-GPU price."""
    if nodes < 2 or node.node_count != 1:
        raise ValueError("a cluster is two or more nodes of a single-node offer")
    return dataclasses.replace(
        node,
        gpu_count=node.gpu_count * nodes,
        total_price_per_hour=round(node.total_price_per_hour * nodes, 6),
        node_count=nodes,
        cluster_max_nodes=0,
        vendor_data=dict(node.vendor_data),
    )


def node_offer(offer: Offer) -> Offer:
    """What one node of a cluster offer is created from (a single-node offer is its own node)."""
    if offer.node_count <= 1:
        return offer
    return dataclasses.replace(
        offer,
        gpu_count=offer.gpu_count // offer.node_count,
        total_price_per_hour=round(offer.total_price_per_hour / offer.node_count, 6),
        node_count=1,
        vendor_data=dict(offer.vendor_data),
    )


# ----- JSON form ---------------------------------------------------------------------------------
_DATETIME_FIELDS = ("fetched_at",)
_OFFER_FIELDS = {f.name for f in dataclasses.fields(Offer)}


def offer_to_dict(offer: Offer) -> dict[str, Any]:
    """The whole offer as JSON-safe data (vendor_data included), for DB rows and snapshots."""
    data = {f: getattr(offer, f) for f in _OFFER_FIELDS}
    data["vendor_data"] = dict(offer.vendor_data)
    for name in _DATETIME_FIELDS:
        data[name] = data[name].isoformat()
    return data


def offer_from_dict(data: dict[str, Any]) -> Offer:
    """Inverse of `offer_to_dict`. Keys it does not know (written by a newer version) are ignored."""
    values = {k: v for k, v in data.items() if k in _OFFER_FIELDS}
    for name in _DATETIME_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    values["vendor_data"] = dict(values.get("vendor_data") or {})
    return Offer(**values)
