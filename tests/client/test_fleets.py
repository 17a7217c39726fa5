"""The SDK's fleet methods (docs/fleets.md): blocking against a live service with the engine (a
fleet reaches its size and is deleted with nothing left on the vendors), asyncio in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gpusupply.client import AsyncGpuSupply, BadRequestError, ConflictError, NotFoundError
from gpusupply.client.calls import offers_query
from gpusupply.settings import VENDORS
from tests.client.helpers import LiveService, live_markers, live_service
from tests.conftest import SSH_KEY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("sdk-fleets")) as service:
        yield service


def until(check: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {within} s"
        time.sleep(0.1)


def test_a_fleet_from_create_to_deleted(live: LiveService) -> None:
    with live.client() as gs:
        fleet = gs.create_fleet("sdk", offers_query("RTX4090", max_price_per_gpu_hour=50), 2, ssh_public_key=SSH_KEY)
        assert (fleet.name, fleet.size, fleet.status, fleet.placement) == ("sdk", 2, "active", "spread")
        running = until(lambda: (f := gs.get_fleet(fleet.fleet_id)).running == 2 and f)
        assert all(m.access.ssh_command for m in running.members)
        assert gs.scale_fleet(fleet.fleet_id, 1).size == 1
        until(lambda: gs.get_fleet(fleet.fleet_id).counting == 1)
        changed = gs.update_fleet(fleet.fleet_id, placement="pack", max_hourly_spend=100)
        assert (changed.placement, changed.max_hourly_spend) == ("pack", 100.0)
        assert gs.update_fleet(fleet.fleet_id, max_hourly_spend=None).max_hourly_spend is None
        assert [f.fleet_id for f in gs.list_fleets().fleets] == [fleet.fleet_id]
        assert gs.delete_fleet(fleet.fleet_id).status == "deleting"
        with pytest.raises(ConflictError, match="already being deleted"):
            gs.delete_fleet(fleet.fleet_id)
        until(lambda: gs.get_fleet(fleet.fleet_id).status == "deleted")
        member_ids = {str(m.resource_id) for m in running.members}
        for vendor in VENDORS:
            assert not [m for m in live_markers(live, vendor) if any(rid in m for rid in member_ids)]
        kinds = [e.kind for e in gs.list_fleet_events(fleet.fleet_id).events]
        assert kinds[0] == "fleet_created" and kinds[-1] == "fleet_deleted"


@pytest.fixture
async def sdk(service: Any) -> AsyncIterator[AsyncGpuSupply]:
    transport = httpx.ASGITransport(app=service.app)
    async with AsyncGpuSupply("http://service", service.tenants["alice"].token, transport=transport) as gs:
        yield gs


async def test_async_fleet_methods_and_errors(sdk: AsyncGpuSupply) -> None:
    fleet = await sdk.create_fleet("async", {"compute": {"gpu_type": "H100"}}, 3, ssh_public_key=SSH_KEY, on_preemption="shrink")
    assert fleet.on_preemption == "shrink" and fleet.spec["compute"]["gpu_type"] == "H100"
    assert (await sdk.get_fleet(fleet.fleet_id)).size == 3
    assert (await sdk.scale_fleet(fleet.fleet_id, 0)).size == 0
    assert (await sdk.list_fleets()).total_count == 1
    with pytest.raises(ConflictError, match="already have a fleet named"):
        await sdk.create_fleet("async", {"compute": {"gpu_type": "H100"}}, 1, ssh_public_key=SSH_KEY)
    with pytest.raises(BadRequestError, match="not a valid OpenSSH public key"):
        await sdk.create_fleet("other", {"compute": {"gpu_type": "H100"}}, 1, ssh_public_key="nope")
    with pytest.raises(ValueError, match="fleet_id must be a UUID"):
        await sdk.get_fleet("not-an-id")
    await sdk.delete_fleet(fleet.fleet_id)
    assert [e.kind for e in (await sdk.list_fleet_events(fleet.fleet_id)).events] == ["fleet_created", "fleet_changed", "fleet_deleting"]
    with pytest.raises(NotFoundError):
        await sdk.get_fleet("00000000-0000-0000-0000-000000000000")
