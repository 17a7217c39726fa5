"""engine/batch_reads.py: concurrent reads of one vendor's instances share vendor calls (a listing
when that is cheaper than a get each), against the fal sandbox over HTTP; and the pure choice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from gpusupply.core.errors import VendorUnavailable
from gpusupply.engine.batch_reads import LIST_COST_FACTOR, InstanceReader, should_list
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.vendors.base import CreateRequest
from gpusupply.vendors.registry import VendorSet

from .helpers import RATE_SCALE, SSH_KEY, start_sandboxes


@pytest.mark.parametrize(
    ("wanted", "listed_before", "page_size", "expected"),
    [
        (1, 0, 100, False),  # one instance: a get
        (LIST_COST_FACTOR, 0, 100, True),  # a one-page listing replaces two gets
        (LIST_COST_FACTOR, 250, 100, False),  # three pages for two instances: gets
        (3 * LIST_COST_FACTOR, 250, 100, True),
        (50, 0, None, False),  # an adapter that does not page: never list
    ],
)
def test_should_list(wanted: int, listed_before: int, page_size: int | None, expected: bool) -> None:
    assert should_list(wanted, listed_before, page_size) is expected


@pytest.fixture
async def fal() -> AsyncIterator[VendorSet]:
    config = SandboxConfig(seed=5, offers=60, ready_after=0.0, hang_seconds=0.5, rate_scale=RATE_SCALE)
    vendors = await start_sandboxes(["fal"], config=config)
    sandbox = vendors.sandboxes["fal"]
    sandbox.stock = dict.fromkeys(sandbox.stock, 100)
    try:
        yield vendors
    finally:
        await vendors.aclose()


async def create_instances(vendors: VendorSet, count: int) -> list[str]:
    adapter = vendors.adapters["fal"]
    offer = next(o for o in await adapter.list_offers() if o.gpu_count == 1)
    made = [await adapter.create(CreateRequest(uuid.uuid4(), offer, SSH_KEY)) for _ in range(count)]
    return [instance.vendor_instance_id for instance in made]


async def test_concurrent_reads_share_one_listing(fal: VendorSet) -> None:
    ids = await create_instances(fal, 6)
    adapter, sandbox = fal.adapters["fal"], fal.sandboxes["fal"]
    expected = {i: (await adapter.get(i)).state for i in ids}
    reader = InstanceReader(adapter)
    before = sandbox.requests
    answers = await asyncio.gather(*(reader.read(i) for i in ids))
    assert sandbox.requests - before == 1  # one listing page for all six
    assert reader.calls == {"list": 1, "get": 0}
    assert {a.vendor_instance_id: a.state for a in answers if a is not None} == expected


async def test_one_read_is_a_get(fal: VendorSet) -> None:
    [instance_id] = await create_instances(fal, 1)
    reader = InstanceReader(fal.adapters["fal"])
    answer = await reader.read(instance_id)
    assert answer is not None and answer.vendor_instance_id == instance_id
    assert reader.calls == {"get": 1}


async def test_an_instance_missing_from_the_listing_is_confirmed_gone_by_a_get(fal: VendorSet) -> None:
    ids = await create_instances(fal, 3)
    adapter = fal.adapters["fal"]
    await adapter.delete(ids[0])
    reader = InstanceReader(adapter)
    answers = await asyncio.gather(*(reader.read(i) for i in ids))
    assert answers[0] is None
    assert [a.vendor_instance_id for a in answers[1:] if a is not None] == ids[1:]
    assert reader.calls == {"list": 1, "get": 1}


async def test_asks_during_a_read_wait_for_the_next_one(fal: VendorSet) -> None:
    ids = await create_instances(fal, 5)
    reader = InstanceReader(fal.adapters["fal"])
    first = asyncio.create_task(reader.read(ids[0]))
    await asyncio.sleep(0.001)  # the first read is in flight
    later = await asyncio.gather(*(reader.read(i) for i in ids[1:]))
    assert (await first) is not None
    assert [a.vendor_instance_id for a in later if a is not None] == ids[1:]
    assert reader.calls == {"get": 1, "list": 1}  # the first alone, then the other four together


async def test_a_failed_listing_fails_every_ask(fal: VendorSet) -> None:
    ids = await create_instances(fal, 3)
    fal.sandboxes["fal"].faults.faults = {"500": 1.0}
    reader = InstanceReader(fal.adapters["fal"])
    answers = await asyncio.gather(*(reader.read(i) for i in ids), return_exceptions=True)
    assert all(isinstance(a, VendorUnavailable) for a in answers), answers
