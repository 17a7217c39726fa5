"""Helpers for fleet tests on the engine rig: a fleet written as the API writes it, its members,
and the sandboxes' truth about them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from gpusupply.contract.offers import OffersRequest
from gpusupply.core.fleets import COUNTING_STATUS_VALUES
from gpusupply.db.models import Event, Fleet, Resource, Tenant
from gpusupply.services import fleets
from gpusupply.services.keys import Principal

from .helpers import SSH_KEY, Rig, wait_until

# Spot 1x H100 on the engine rig's sandboxes (seed 3): one Vast offer (Tel Aviv) and RunPod's in
# three regions, so a spread fleet of 3 fills three vendor-regions and a replacement has a fourth.
SPOT_H100 = {"compute": {"gpu_type": "H100", "gpu_count": 1, "contract_type": "spot"}}
SPOT_VENDORS = ["vast", "runpod"]
FLEET_SETTINGS: dict[str, Any] = {
    "refresh_interval_seconds": 0.2,
    "absence_confirm_seconds": 0.2,
    "create_visibility_seconds": 0.3,
    "fleet_check_seconds": 1.0,
}


async def principal(rig: Rig) -> Principal:
    async with rig.db.session() as session:
        tenant = await session.get(Tenant, rig.tenant_id)
        assert tenant is not None
        name = tenant.name
    return Principal(rig.tenant_id, name, uuid.uuid4(), "test", False)


async def create_fleet(rig: Rig, *, spec: dict[str, Any] | None = None, size: int = 3, name: str = "fleet", **kw: Any) -> uuid.UUID:
    view = await fleets.create_fleet(
        rig.db, await principal(rig), name=name, spec=OffersRequest.model_validate(spec or SPOT_H100), size=size, ssh_public_key=SSH_KEY, **kw
    )
    return view.fleet.id


async def fleet_row(rig: Rig, fleet_id: uuid.UUID) -> Fleet:
    async with rig.db.session() as session:
        row = await session.get(Fleet, fleet_id)
        assert row is not None
        return row


async def members(rig: Rig, fleet_id: uuid.UUID, *statuses: str) -> list[Resource]:
    query = select(Resource).where(Resource.fleet_id == fleet_id).order_by(Resource.created_at, Resource.id)
    if statuses:
        query = query.where(Resource.status.in_(statuses))
    async with rig.db.session() as session:
        return list((await session.execute(query)).scalars())


async def counting(rig: Rig, fleet_id: uuid.UUID) -> list[Resource]:
    return await members(rig, fleet_id, *COUNTING_STATUS_VALUES)


async def fleet_events(rig: Rig, fleet_id: uuid.UUID, kind: str | None = None) -> list[Event]:
    query = select(Event).where(Event.fleet_id == fleet_id).order_by(Event.id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    async with rig.db.session() as session:
        return list((await session.execute(query)).scalars())


async def wait_running(rig: Rig, fleet_id: uuid.UUID, size: int, *, within: float = 60.0) -> list[Resource]:
    """Until exactly `size` members count and all of them run."""
    found: list[Resource] = []

    async def done() -> bool:
        nonlocal found
        found = await counting(rig, fleet_id)
        return len(found) == size and all(m.status == "running" for m in found)

    await wait_until(done, within=within, what=f"{size} running members of fleet {fleet_id}")
    return found


async def live_on_vendors(rig: Rig, vendors: list[str]) -> list[dict[str, Any]]:
    return [i for vendor in vendors for i in await rig.live_instances(vendor)]
