"""Resources: list, read, delete, start/stop/reboot, events."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from gpusupply.api.deps import ApiRoute, ServiceContext, get_ctx, get_principal, responses, service_context
from gpusupply.api.views import event_out, model_response, resource_detail, resource_list_json
from gpusupply.contract import schemas
from gpusupply.contract.cost import ResourcePatch
from gpusupply.core.inputs import BoundedInt, Text
from gpusupply.services import resources
from gpusupply.services.keys import Principal
from gpusupply.services.offers import MAX_OFFSET

router = APIRouter(route_class=ApiRoute, tags=["Resources"], responses=responses(401, 503))


@router.get(
    "/resources",
    response_model=schemas.ResourceList,
    summary="Your resources, newest first",
    responses=responses(422),
)
async def list_resources(
    offer_id: UUID | None = None,
    status: Text | None = Query(None, description="pending, provisioning, running, ... deleted"),
    vendor: Text | None = Query(None, description="vast, fal, nebula, lambda or runpod"),
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 100,
    offset: Annotated[BoundedInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    principal: Principal = Depends(get_principal),
    *,
    request: Request,
) -> Response:
    return await resource_list_answer(
        get_ctx(request), principal, offer_id=offer_id, status=status, vendor=vendor, limit=limit, offset=offset
    )


async def resource_list_answer(
    ctx: ServiceContext, principal: Principal, *, offer_id: UUID | None = None, status: str | None = None,
    vendor: str | None = None, limit: int = 100, offset: int = 0,
) -> Response:
    """The listing's answer (this route's, and api/hot.py's)."""
    page, costs = await resources.list_resources_page(
        ctx.db, principal, offer_id=offer_id, status=status, vendor=vendor, limit=limit, offset=offset, pages=ctx.listing_pages
    )
    return Response(resource_list_json(page, costs, limit, offset), media_type="application/json")


@router.get(
    "/resources/{resource_id}",
    response_model=schemas.ResourceDetail,
    summary="One resource (re-read from the vendor when its last sync is older than 30 s)",
    responses=responses(404, 422),
)
async def get_resource(
    resource_id: UUID,
    force_refresh: bool = Query(False, description="Re-read the vendor even if the last sync is recent."),
    principal: Principal = Depends(get_principal),
    *,
    request: Request,
) -> Response:
    return await resource_answer(get_ctx(request), principal, resource_id, force_refresh=force_refresh)


async def resource_answer(ctx: ServiceContext, principal: Principal, resource_id: UUID, *, force_refresh: bool = False) -> Response:
    """One resource's answer (this route's, and api/hot.py's)."""
    resource, cost = await resources.get_resource_with_cost(
        ctx.db, ctx.refresh_resource, principal, resource_id, force_refresh=force_refresh, refresh_timeout=ctx.settings.vendor_timeout + 5
    )
    return model_response(resource_detail(resource, cost, await resources.linked_resources(ctx.db, principal, resource)))


@router.patch(
    "/resources/{resource_id}",
    response_model=schemas.ResourceDetail,
    summary="Set or remove the resource's auto-delete limits (extension)",
    description=(
        "`auto_delete`: `delete_at` (a future ISO 8601 instant) or `ttl_seconds` (from now), and `spend_limit` (USD). "
        "Merged with the current limits: a key sent as null removes that limit; `auto_delete: null` removes all. "
        "409 once the resource is deleting or ended. See docs/cost.md."
    ),
    responses=responses(404, 409, 413, 422),
)
async def patch_resource(
    resource_id: UUID,
    body: ResourcePatch,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> schemas.ResourceDetail:
    fields = body.auto_delete.model_dump(exclude_unset=True) if body.auto_delete is not None else None
    await resources.set_auto_delete(ctx.db, principal, resource_id, fields)
    resource, cost = await resources.stored_resource_with_cost(ctx.db, principal, resource_id)
    return resource_detail(resource, cost, await resources.linked_resources(ctx.db, principal, resource))


@router.delete(
    "/resources/{resource_id}",
    response_model=schemas.DeleteResourceResponse,
    summary="Delete a resource (asynchronous: deleting, then deleted once the vendor confirms)",
    description=(
        "Refused with 409 when the resource is already deleting or ended, and while a start/stop/reboot is in "
        "flight unless `force=true`. A pending or provisioning resource can always be deleted. Deleting a cluster "
        "deletes every node; a node of a live cluster is refused with 409 naming the cluster."
    ),
    responses=responses(404, 409, 422),
)
async def delete_resource(
    resource_id: UUID,
    force: bool = Query(False, description="Delete even while a start/stop/reboot is in flight."),
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> schemas.DeleteResourceResponse:
    resource = await resources.delete_resource(ctx.db, principal, resource_id, force=force)
    return schemas.DeleteResourceResponse(
        resource_id=resource.id,
        status=resource.status,
        message="Deletion started; the resource becomes deleted once the vendor confirms the instance is gone.",
    )


async def _action(action: str, resource_id: UUID, principal: Principal, ctx: ServiceContext) -> schemas.ActionResponse:
    resource = await resources.request_action(ctx.db, ctx.vendors, principal, resource_id, action)
    return schemas.ActionResponse(
        resource_id=resource.id,
        status=resource.status,
        action=action,
        message=f"{action} requested; poll GET /resources/{resource.id} for the outcome.",
    )


_ACTION_RESPONSES = responses(404, 409, 413, 422)


@router.post("/resources/{resource_id}/stop", status_code=202, response_model=schemas.ActionResponse,
             summary="Stop a running instance", responses=_ACTION_RESPONSES)
async def stop_resource(
    resource_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> schemas.ActionResponse:
    return await _action("stop", resource_id, principal, ctx)


@router.post("/resources/{resource_id}/start", status_code=202, response_model=schemas.ActionResponse,
             summary="Start a stopped instance", responses=_ACTION_RESPONSES)
async def start_resource(
    resource_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> schemas.ActionResponse:
    return await _action("start", resource_id, principal, ctx)


@router.post("/resources/{resource_id}/reboot", status_code=202, response_model=schemas.ActionResponse,
             summary="Reboot a running instance", responses=_ACTION_RESPONSES)
async def reboot_resource(
    resource_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> schemas.ActionResponse:
    return await _action("reboot", resource_id, principal, ctx)


@router.get(
    "/resources/{resource_id}/events",
    response_model=schemas.EventList,
    summary="The resource's history, oldest first",
    responses=responses(404, 422),
)
async def resource_events(
    resource_id: UUID,
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 500,
    offset: Annotated[BoundedInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> schemas.EventList:
    events, total = await resources.list_events(ctx.db, principal, resource_id, limit=limit, offset=offset)
    return schemas.EventList(
        resource_id=resource_id, events=[event_out(e) for e in events], total_count=total, limit=limit, offset=offset
    )
