"""The service's own routes as client methods: what it offers (GPUs, vendors, regions, contract
types) and whether it is up and ready. The blocking and the asyncio methods side by side, so a
route is added to both at once."""

from __future__ import annotations

from gpusupply.client import calls
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.schemas import Health, Readiness, VendorInfo


class BlockingDiscovery(BlockingDriver):
    """What the service offers, and its health: the methods of `GpuSupply`."""

    # ----- discovery -----------------------------------------------------------------------------
    def available_gpus(self) -> dict[str, list[str]]:
        """GPU families and their canonical names: {"H100": ["nvidia-h100-sxm5-80gb", ...], ...}."""
        return self._call(calls.available_gpus())

    def available_vendors(self) -> list[VendorInfo]:
        return self._call(calls.available_vendors())

    def available_regions(self) -> list[str]:
        return self._call(calls.available_regions())

    def available_contracts(self) -> list[str]:
        return self._call(calls.available_contracts())

    # ----- health --------------------------------------------------------------------------------
    def health(self) -> Health:
        return self._call(calls.health())

    def readiness(self) -> Readiness:
        return self._call(calls.readiness())


class AsyncDiscovery(AsyncDriver):
    """What the service offers, and its health: the methods of `AsyncGpuSupply` (the same, awaited)."""

    # ----- discovery -----------------------------------------------------------------------------
    async def available_gpus(self) -> dict[str, list[str]]:
        return await self._call(calls.available_gpus())

    async def available_vendors(self) -> list[VendorInfo]:
        return await self._call(calls.available_vendors())

    async def available_regions(self) -> list[str]:
        return await self._call(calls.available_regions())

    async def available_contracts(self) -> list[str]:
        return await self._call(calls.available_contracts())

    # ----- health --------------------------------------------------------------------------------
    async def health(self) -> Health:
        return await self._call(calls.health())

    async def readiness(self) -> Readiness:
        return await self._call(calls.readiness())
