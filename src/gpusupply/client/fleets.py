"""Fleets as client methods (docs/fleets.md): create, list, read, scale or change, delete, and
the history; blocking and asyncio side by side."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from gpusupply.client import calls
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.fleets import FleetCreate, FleetDetail, FleetList, FleetPatch
from gpusupply.contract.offers import OffersRequest
from gpusupply.contract.schemas import EventList

OnPreemption = Literal["replace", "shrink"]
Placement = Literal["spread", "pack"]
_UNSET: Any = object()


def _create_body(
    name: str, spec: OffersRequest | dict[str, Any], size: int, ssh_public_key: str, cloud_init: str | None,
    on_preemption: OnPreemption, placement: Placement, max_hourly_spend: float | None,
) -> FleetCreate:
    return FleetCreate.model_validate(
        {"name": name, "spec": spec if isinstance(spec, dict) else spec.model_dump(mode="json", exclude_none=True), "size": size,
         "ssh_public_key": ssh_public_key, "cloud_init": cloud_init, "on_preemption": on_preemption, "placement": placement,
         "max_hourly_spend": max_hourly_spend}
    )


def _patch(size: int | None, on_preemption: OnPreemption | None, placement: Placement | None, max_hourly_spend: Any) -> FleetPatch:
    fields: dict[str, Any] = {k: v for k, v in {"size": size, "on_preemption": on_preemption, "placement": placement}.items() if v is not None}
    if max_hourly_spend is not _UNSET:
        fields["max_hourly_spend"] = max_hourly_spend
    return FleetPatch.model_validate(fields)


class BlockingFleets(BlockingDriver):
    """Fleets: the methods of `GpuSupply`."""

    def create_fleet(
        self,
        name: str,
        spec: OffersRequest | dict[str, Any],
        size: int,
        *,
        ssh_public_key: str,
        cloud_init: str | None = None,
        on_preemption: OnPreemption = "replace",
        placement: Placement = "spread",
        max_hourly_spend: float | None = None,
    ) -> FleetDetail:
        """Keep `size` resources of `spec` (a get_offers document, e.g. `offers_query("H100",
        contract_type="spot")`) running. Answers at once; the engine adds the members."""
        body = _create_body(name, spec, size, ssh_public_key, cloud_init, on_preemption, placement, max_hourly_spend)
        return self._call(calls.create_fleet(body))

    def list_fleets(self, *, include_deleted: bool = False, limit: int = 100, offset: int = 0) -> FleetList:
        return self._call(calls.list_fleets(include_deleted=include_deleted, limit=limit, offset=offset))

    def get_fleet(self, fleet_id: UUID | str) -> FleetDetail:
        return self._call(calls.get_fleet(fleet_id))

    def scale_fleet(self, fleet_id: UUID | str, size: int) -> FleetDetail:
        return self._call(calls.update_fleet(fleet_id, _patch(size, None, None, _UNSET)))

    def update_fleet(
        self, fleet_id: UUID | str, *, size: int | None = None, on_preemption: OnPreemption | None = None,
        placement: Placement | None = None, max_hourly_spend: float | None = _UNSET,
    ) -> FleetDetail:
        """Change what is given; `max_hourly_spend=None` removes the cap."""
        return self._call(calls.update_fleet(fleet_id, _patch(size, on_preemption, placement, max_hourly_spend)))

    def delete_fleet(self, fleet_id: UUID | str) -> FleetDetail:
        """Start deleting every member; the fleet is `deleted` once every vendor confirmed."""
        return self._call(calls.delete_fleet(fleet_id))

    def list_fleet_events(self, fleet_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return self._call(calls.list_fleet_events(fleet_id, limit=limit, offset=offset))


class AsyncFleets(AsyncDriver):
    """Fleets: the methods of `AsyncGpuSupply` (the same, awaited)."""

    async def create_fleet(
        self,
        name: str,
        spec: OffersRequest | dict[str, Any],
        size: int,
        *,
        ssh_public_key: str,
        cloud_init: str | None = None,
        on_preemption: OnPreemption = "replace",
        placement: Placement = "spread",
        max_hourly_spend: float | None = None,
    ) -> FleetDetail:
        body = _create_body(name, spec, size, ssh_public_key, cloud_init, on_preemption, placement, max_hourly_spend)
        return await self._call(calls.create_fleet(body))

    async def list_fleets(self, *, include_deleted: bool = False, limit: int = 100, offset: int = 0) -> FleetList:
        return await self._call(calls.list_fleets(include_deleted=include_deleted, limit=limit, offset=offset))

    async def get_fleet(self, fleet_id: UUID | str) -> FleetDetail:
        return await self._call(calls.get_fleet(fleet_id))

    async def scale_fleet(self, fleet_id: UUID | str, size: int) -> FleetDetail:
        return await self._call(calls.update_fleet(fleet_id, _patch(size, None, None, _UNSET)))

    async def update_fleet(
        self, fleet_id: UUID | str, *, size: int | None = None, on_preemption: OnPreemption | None = None,
        placement: Placement | None = None, max_hourly_spend: float | None = _UNSET,
    ) -> FleetDetail:
        return await self._call(calls.update_fleet(fleet_id, _patch(size, on_preemption, placement, max_hourly_spend)))

    async def delete_fleet(self, fleet_id: UUID | str) -> FleetDetail:
        return await self._call(calls.delete_fleet(fleet_id))

    async def list_fleet_events(self, fleet_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return await self._call(calls.list_fleet_events(fleet_id, limit=limit, offset=offset))
