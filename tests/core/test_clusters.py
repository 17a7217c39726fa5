"""Cluster offers as pure functions: which node offers make which clusters, and their prices."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gpusupply.core.offers import (
    Offer,
    OfferQuery,
    cluster_nodes,
    cluster_offer,
    deployment_type,
    matches,
    node_offer,
    offer_from_dict,
    offer_to_dict,
    wants_clusters,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)


def node(gpus: int = 8, *, max_nodes: int = 4, infiniband: float = 0.0, price: float = 2.0) -> Offer:
    return Offer(
        vendor="fal", vendor_offer_id="gpu_8x_h100_sxm5:sector_1", gpu_type="nvidia-h100-sxm5-80gb", gpu_family="H100",
        gpu_count=gpus, gpu_memory_gb=80, gpu_price_per_hour=price, total_price_per_hour=price * gpus,
        contract_type="ondemand", vendor_region="auto", region="Other", fetched_at=AT,
        cluster_max_nodes=max_nodes, infiniband_bandwidth_gbps=infiniband,
    )


def test_a_cluster_costs_the_same_per_gpu_and_covers_every_node() -> None:
    cluster = cluster_offer(node(), 2)
    assert (cluster.gpu_count, cluster.node_count, cluster.gpu_price_per_hour, cluster.total_price_per_hour) == (16, 2, 2.0, 32.0)
    assert node_offer(cluster) == node(max_nodes=0)
    assert offer_from_dict(offer_to_dict(cluster)) == cluster
    with pytest.raises(ValueError):
        cluster_offer(node(), 1)


@pytest.mark.parametrize(
    ("query", "nodes"),
    [
        (OfferQuery(gpu_family="H100", gpu_count=16), 2),
        (OfferQuery(gpu_family="H100", gpu_count=32), 4),
        (OfferQuery(gpu_family="H100", gpu_count=40), None),  # more nodes than can be placed together
        (OfferQuery(gpu_family="H100", gpu_count=12), None),  # not a whole number of nodes
        (OfferQuery(gpu_family="H100", gpu_count=8), None),  # one node is not a cluster
        (OfferQuery(gpu_family="H100", gpu_count=16, node_count=4), None),
        (OfferQuery(gpu_family="H100", gpu_count=16, interconnect="infiniband"), None),  # no fabric
    ],
)
def test_cluster_nodes(query: OfferQuery, nodes: int | None) -> None:
    assert cluster_nodes(node(), query) == nodes


def test_infiniband_needs_a_fabric_and_node_count_narrows_matching() -> None:
    fabric = node(infiniband=3200.0)
    query = OfferQuery(gpu_family="H100", gpu_count=16, interconnect="infiniband")
    assert cluster_nodes(fabric, query) == 2
    cluster = cluster_offer(fabric, 2)
    assert matches(cluster, query) and deployment_type(cluster) == "infiniband-cluster"
    assert deployment_type(cluster_offer(node(), 2)) == "co-located-cluster" and deployment_type(node()) == "vm"
    assert not matches(cluster, OfferQuery(gpu_family="H100", gpu_count=16, node_count=1))
    assert not matches(node(), OfferQuery(gpu_family="H100", gpu_count=8, interconnect="infiniband"))
    assert cluster_nodes(node(max_nodes=0), OfferQuery(gpu_family="H100", gpu_count=16)) is None


def test_which_searches_want_clusters() -> None:
    assert wants_clusters(OfferQuery(gpu_family="H100", gpu_count=16), largest_node_gpus=8)
    assert not wants_clusters(OfferQuery(gpu_family="H100", gpu_count=8), largest_node_gpus=8)
    assert wants_clusters(OfferQuery(gpu_family="H100", gpu_count=8, node_count=2), largest_node_gpus=8)
    assert not wants_clusters(OfferQuery(gpu_family="H100", gpu_count=16, node_count=1), largest_node_gpus=8)
    assert wants_clusters(OfferQuery(gpu_family="H100", gpu_count=8, interconnect="infiniband"), largest_node_gpus=8)
