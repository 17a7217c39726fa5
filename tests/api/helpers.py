"""Helpers for API tests: searching, procuring and polling over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import SSH_KEY

YAML = {"Content-Type": "application/yaml"}


async def search(client: httpx.AsyncClient, document: str = "compute:\n  gpu_type: H100\n", **params: Any) -> dict[str, Any]:
    response = await client.post("/get_offers", content=document, headers=YAML, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def first_offer(client: httpx.AsyncClient, vendor: str = "nebula", gpu: str | None = None) -> dict[str, Any]:
    """The cheapest offer of `vendor` (any GPU unless `gpu`), 1 GPU."""
    gpus = [gpu] if gpu else ["RTX4090", "H100", "A100", "L40S", "RTX3090", "RTX5090", "A6000", "L4", "H200", "B200"]
    for family in gpus:
        found = await search(client, f"vendor: {vendor}\ncompute:\n  gpu_type: {family}\n", limit=1)
        if found["offers"]:
            return found["offers"][0]
    raise AssertionError(f"no 1-GPU offer from {vendor}")


async def procure(client: httpx.AsyncClient, offer_id: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    return await client.post("/procure_offer", json={"offer_id": offer_id, "ssh_public_key": SSH_KEY, **extra}, headers=headers)


async def procured_resource(client: httpx.AsyncClient, vendor: str = "nebula") -> str:
    offer = await first_offer(client, vendor)
    response = await procure(client, offer["offer_id"])
    assert response.status_code == 200, response.text
    return response.json()["resource_ids"][0]


async def wait_for(check: Callable[[], Any], *, within: float = 30.0, interval: float = 0.1) -> Any:
    """Poll `check` (async) until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value {value!r})")
        await asyncio.sleep(interval)
