"""Cluster offers in POST /get_offers and GET /offers/{id}, against the sandbox vendors."""

from __future__ import annotations

from typing import Any

from tests.api.helpers import YAML, search

H100_16 = "compute:\n  gpu_type: H100\n  gpu_count: 16\n"


async def test_sixteen_h100_finds_an_infiniband_cluster_on_fal_and_co_located_ones_elsewhere(service: Any) -> None:
    body = await search(service.alice, H100_16, limit=1000)
    offers = body["offers"]
    assert offers and body["total_count"] == len(offers)
    for offer in offers:
        assert offer["gpu_count"] == 16
        assert offer["node_count"] * offer["gpus_per_node"] == 16
    fal = [o for o in offers if o["vendor"] == "fal"]
    assert fal and all(o["type"] == "cluster" and o["deployment_type"] == "infiniband-cluster" for o in fal)
    assert {(o["node_count"], o["gpus_per_node"]) for o in fal} == {(2, 8)}
    assert all(o["infiniband_bandwidth_gbps"] > 0 for o in fal)
    elsewhere = [o for o in offers if o["vendor"] != "fal" and o["type"] == "cluster"]
    assert elsewhere and {o["deployment_type"] for o in elsewhere} == {"co-located-cluster"}
    assert all(o["infiniband_bandwidth_gbps"] == 0 for o in elsewhere)
    prices = [(o["gpu_price_per_hour"], o["total_price_per_hour"]) for o in offers]
    assert prices == sorted(prices)
    for offer in offers:  # priced per GPU-hour: the total covers every node
        assert abs(offer["total_price_per_hour"] - offer["gpu_price_per_hour"] * 16) < 1e-3


async def test_a_cluster_offer_is_a_stored_offer(service: Any) -> None:
    body = await search(service.alice, H100_16 + "  interconnect: infiniband\n")
    offer = body["offers"][0]
    response = await service.alice.get(f"/offers/{offer['offer_id']}")
    assert response.status_code == 200, response.text
    details = response.json()
    assert (details["type"], details["node_count"], details["gpus_per_node"], details["gpu_count"]) == ("cluster", 2, 8, 16)
    assert details["status"] == "available"
    again = await search(service.alice, H100_16 + "  interconnect: infiniband\n")
    assert again["offers"][0]["offer_id"] == offer["offer_id"]  # the same id on every search


async def test_node_count_and_interconnect_narrow_the_search(service: Any) -> None:
    infiniband = await search(service.alice, H100_16 + "  interconnect: infiniband\n", limit=1000)
    assert infiniband["offers"] and {o["vendor"] for o in infiniband["offers"]} == {"fal"}
    assert infiniband["filters_applied"]["interconnect"] == "infiniband"
    two = await search(service.alice, H100_16 + "  node_count: 2\n", limit=1000)
    assert two["filters_applied"]["node_count"] == 2
    assert two["offers"] and all(o["node_count"] == 2 and o["gpus_per_node"] == 8 for o in two["offers"])
    four = await search(service.alice, H100_16 + "  node_count: 4\n", limit=1000)
    assert all(o["node_count"] == 4 and o["gpus_per_node"] == 4 for o in four["offers"])
    single = await search(service.alice, "compute:\n  gpu_type: H100\n  gpu_count: 8\n  node_count: 1\n", limit=1000)
    assert single["offers"] and all(o["type"] == "vm" for o in single["offers"])


async def test_an_ordinary_search_answers_no_cluster(service: Any) -> None:
    body = await search(service.alice, "compute:\n  gpu_type: H100\n  gpu_count: 8\n", limit=1000)
    assert body["offers"] and all(o["type"] == "vm" and o["node_count"] == 1 for o in body["offers"])
    assert all(o["deployment_type"] == "vm" for o in body["offers"])


async def test_a_node_count_that_does_not_divide_the_gpus_is_a_422(service: Any) -> None:
    response = await service.alice.post("/get_offers", content=H100_16 + "  node_count: 3\n", headers=YAML)
    assert response.status_code == 422
    assert "must be a multiple of node_count" in response.text
    response = await service.alice.post("/get_offers", content=H100_16 + "  interconnect: ethernet\n", headers=YAML)
    assert response.status_code == 422
