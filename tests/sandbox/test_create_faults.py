"""Every sandbox can be told, through its `/_sandbox` controls, to refuse or stall one create
(sandbox/common.py), so a cluster's rollback is testable on any vendor: a refused create is the
vendor's own capacity refusal (the adapter reads it as CapacityGone, nothing is made), a stalled
one is made but never comes up."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from gpusupply.core.errors import CapacityGone
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import CreateRequest
from tests.conftest import SSH_KEY


async def three_offers(vendors: Any, vendor: str) -> list[Any]:
    """Three on-demand offers (a Vast offer is one machine: one create each), the cheapest first."""
    adapter = vendors.adapters[vendor]
    offers = sorted((o for o in await adapter.list_offers() if o.available and o.contract_type == "ondemand"),
                    key=lambda o: o.total_price_per_hour)
    return [offers[n % len(offers)] for n in range(3)]


async def state_of(adapter: Any, created: Any, request: CreateRequest) -> InstanceState:
    """The instance's state, found by its id, or by the request's marker (Nebula answers no id)."""
    if created is not None:
        return (await adapter.get(created.vendor_instance_id)).state
    (found,) = [i for i in await adapter.list_instances() if i.resource_id == request.resource_id]
    return found.state


async def arm(vendors: Any, vendor: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=vendors.urls[vendor]) as client:
        return await client.post("/_sandbox/arm", json=body)


@pytest.mark.parametrize("vendor", ["vast", "fal", "nebula", "lambda", "runpod"])
async def test_refuse_then_stall_one_create(vendor: str, vendor_set: Any) -> None:
    if vendor not in vendor_set.adapters:
        pytest.skip(f"{vendor} is not enabled in this run")
    adapter, sandbox = vendor_set.adapters[vendor], vendor_set.sandboxes[vendor]
    offers = await three_offers(vendor_set, vendor)
    assert (await arm(vendor_set, vendor, {"fault": "refuse_create", "after": 1})).status_code == 200
    first_request = CreateRequest(uuid.uuid4(), offers[0], SSH_KEY)
    first = await adapter.create(first_request)  # "after": 1 lets this one through
    with pytest.raises(CapacityGone):
        await adapter.create(CreateRequest(uuid.uuid4(), offers[1], SSH_KEY))
    assert len(sandbox.state()["creates"]) == 1  # the refused create made nothing

    assert (await arm(vendor_set, vendor, {"fault": "stall_create"})).status_code == 200
    stalled_request = CreateRequest(uuid.uuid4(), offers[2], SSH_KEY)
    stalled = await adapter.create(stalled_request)
    sandbox.clock.advance(3600)  # far past any ready_after
    assert await state_of(adapter, first, first_request) == InstanceState.RUNNING
    assert await state_of(adapter, stalled, stalled_request) == InstanceState.PROVISIONING
    assert len(sandbox.state()["creates"]) == 2


async def test_arm_refuses_what_it_cannot_do(vendor_set: Any) -> None:
    vendor = next(iter(vendor_set.adapters))
    bad = await arm(vendor_set, vendor, {"fault": "refuse_create", "after": -1})
    assert bad.status_code == 400 and "after" in bad.text
    bad = await arm(vendor_set, vendor, {"fault": "refuse_create", "after": "one"})
    assert bad.status_code == 400 and "after" in bad.text
