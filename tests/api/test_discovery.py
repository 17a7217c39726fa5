"""Discovery routes: GPU families, vendors (mode, health, capabilities), regions, contracts."""

from __future__ import annotations

from typing import Any

from gpusupply.core.gpus import families
from gpusupply.db.models import VendorState, utcnow


async def test_available_gpus(service: Any) -> None:
    response = await service.alice.get("/available_gpus")
    assert response.status_code == 200
    assert response.json() == families()
    assert "nvidia-h100-sxm5-80gb" in response.json()["H100"]


async def test_regions_and_contracts(service: Any) -> None:
    assert (await service.alice.get("/available_regions")).json() == ["US", "EU", "APAC", "Other"]
    assert (await service.alice.get("/available_contracts")).json() == ["ondemand", "spot"]


async def test_available_vendors_show_mode_health_and_capabilities(service: Any) -> None:
    async with service.db.transaction() as session:
        session.add(VendorState(vendor="nebula", degraded=True, degraded_reason="list failed: 503", degraded_since=utcnow()))
    response = await service.alice.get("/available_vendors")
    assert response.status_code == 200
    vendors = {v["id"]: v for v in response.json()}
    assert set(vendors) == set(service.vendors.adapters)
    for vendor, info in vendors.items():
        assert info["mode"] == "sandbox"
        caps = service.vendors.adapters[vendor].capabilities
        assert info["capabilities"]["stop_start"] == caps.stop_start and info["capabilities"]["reboot"] == caps.reboot
    assert vendors["nebula"]["degraded"] is True and vendors["nebula"]["degraded_reason"] == "list failed: 503"
    assert vendors["fal"]["degraded"] is False and vendors["fal"]["degraded_reason"] is None
    assert vendors["fal"]["capabilities"]["idempotency_key"] is True
