"""Every adapter sends its create through the caller's guard (vendors/http.before_unsafe_send): the
engine records the attempt there, after the pacer's wait, and a guard that refuses keeps the create
from leaving. Against the sandbox vendors over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gpusupply.vendors.base import CreateRequest
from gpusupply.vendors.http import before_unsafe_send
from gpusupply.vendors.registry import SANDBOX_KEY, VENDOR_SPECS
from tests.conftest import SSH_KEY

VENDORS = ["vast", "fal", "nebula", "lambda", "runpod"]


class Withdrawn(Exception):
    pass


async def an_offer(adapter: Any) -> Any:
    return min((o for o in await adapter.list_offers() if o.available and o.contract_type == "ondemand"), key=lambda o: o.total_price_per_hour)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_refusing_guard_keeps_the_create_from_leaving(vendor: str, vendor_set: Any) -> None:
    if vendor not in vendor_set.adapters:
        pytest.skip(f"{vendor} is not enabled in this run")
    adapter, sandbox = vendor_set.adapters[vendor], vendor_set.sandboxes[vendor]
    request = CreateRequest(uuid.uuid4(), await an_offer(adapter), SSH_KEY)
    creates_before = len(sandbox.state()["creates"])
    guarded: list[int] = []

    async def refuse() -> None:
        guarded.append(len(sandbox.state()["creates"]))
        raise Withdrawn

    # A second adapter on the same sandbox: the slot its pacer books for the refused create is not
    # one the create below would wait behind (Lambda allows one launch in 12 s).
    refused_by = VENDOR_SPECS[vendor].adapter(vendor_set.urls[vendor], SANDBOX_KEY)
    with before_unsafe_send(refuse), pytest.raises(Withdrawn):
        await refused_by.create(request)
    await refused_by.aclose()
    assert guarded == [creates_before] and len(sandbox.state()["creates"]) == creates_before

    async def allow() -> None:
        guarded.append(len(sandbox.state()["creates"]))

    with before_unsafe_send(allow):
        await adapter.create(request)
    assert guarded == [creates_before, creates_before]  # once, right before the create left
    assert len(sandbox.state()["creates"]) == creates_before + 1
