"""Fleets: keep N GPUs of a spec running, replacing preempted members (docs/fleets.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.api.views import event_out, fleet_detail, fleet_summary
from gpusupply.contract import fleets as contract
from gpusupply.contract import schemas
from gpusupply.core.inputs import BoundedInt
from gpusupply.services import fleets
from gpusupply.services.keys import Principal
from gpusupply.services.offers import KNOWN_VENDORS, MAX_OFFSET

# The body as this server validates it: the spec's vendor is one of its vendors (like /procure_offer).
if TYPE_CHECKING:
    FleetBody = contract.FleetCreate
else:
    FleetBody = contract.fleet_create_for(KNOWN_VENDORS)

router = APIRouter(route_class=ApiRoute, tags=["Fleets"], responses=responses(401, 503))


@router.post(
    "/fleets",
    status_code=201,
    response_model=contract.FleetDetail,
    summary="Create a fleet: keep `size` resources of `spec` running (extension)",
    description=(
        "Records the fleet and answers at once; the engine adds the members (ordinary resources, procured by spec, "
        "cheapest first with failover) and replaces the ones a vendor takes back. A spec that matches nothing now is "
        "accepted: the fleet is `degraded`, says why, and retries with backoff. 402 when your budget cannot hold the "
        "whole fleet at the spec's price bound; 409 when a fleet of that name exists. See docs/fleets.md."
    ),
    responses=responses(402, 409, 413, 422),
)
async def create_fleet(
    body: FleetBody, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> contract.FleetDetail:
    view = await fleets.create_fleet(
        ctx.db, principal, name=body.name, spec=body.spec, size=body.size, ssh_public_key=body.ssh_public_key,
        cloud_init=body.cloud_init, on_preemption=body.on_preemption, placement=body.placement,
        max_hourly_spend=body.max_hourly_spend,
    )
    return fleet_detail(await fleets.get_fleet(ctx.db, principal, view.fleet.id))


@router.get("/fleets", response_model=contract.FleetList, summary="Your fleets, newest first", responses=responses(422))
async def list_fleets(
    include_deleted: bool = Query(False, description="Also list deleted fleets."),
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 100,
    offset: Annotated[BoundedInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> contract.FleetList:
    views, total = await fleets.list_fleets(ctx.db, principal, limit=limit, offset=offset, include_deleted=include_deleted)
    return contract.FleetList(fleets=[fleet_summary(v) for v in views], total_count=total, limit=limit, offset=offset)


@router.get(
    "/fleets/{fleet_id}",
    response_model=contract.FleetDetail,
    summary="One fleet: members with status and access, wanted and running, spend per hour, latest events",
    responses=responses(404, 422),
)
async def get_fleet(
    fleet_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> contract.FleetDetail:
    return fleet_detail(await fleets.get_fleet(ctx.db, principal, fleet_id))


@router.patch(
    "/fleets/{fleet_id}",
    response_model=contract.FleetDetail,
    summary="Scale a fleet or change its policies",
    description=(
        "Only the fields given change; `max_hourly_spend: null` removes the cap. A smaller `size` deletes the extra "
        "members (those not running yet first). 409 once the fleet is deleting or deleted."
    ),
    responses=responses(402, 404, 409, 413, 422),
)
async def patch_fleet(
    fleet_id: UUID,
    body: contract.FleetPatch,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> contract.FleetDetail:
    return fleet_detail(await fleets.patch_fleet(ctx.db, principal, fleet_id, body.model_dump(exclude_unset=True)))


@router.delete(
    "/fleets/{fleet_id}",
    response_model=contract.FleetDetail,
    summary="Delete a fleet and every member (asynchronous: deleting, then deleted once every vendor confirms)",
    description="A second delete is a 409, as for resources.",
    responses=responses(404, 409, 422),
)
async def delete_fleet(
    fleet_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> contract.FleetDetail:
    return fleet_detail(await fleets.delete_fleet(ctx.db, principal, fleet_id))


@router.get(
    "/fleets/{fleet_id}/events",
    response_model=schemas.EventList,
    summary="The fleet's history, oldest first",
    responses=responses(404, 422),
)
async def fleet_events(
    fleet_id: UUID,
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 500,
    offset: Annotated[BoundedInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> schemas.EventList:
    events, total = await fleets.list_events(ctx.db, principal, fleet_id, limit=limit, offset=offset)
    return schemas.EventList(resource_id=fleet_id, events=[event_out(e) for e in events], total_count=total, limit=limit, offset=offset)
