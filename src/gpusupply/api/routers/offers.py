"""Offers: search (`POST /get_offers`, a YAML or JSON document) and one offer's details."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from gpusupply.api.deps import ApiRoute, ServiceContext, get_ctx, get_principal, responses, service_context
from gpusupply.api.views import offer_details, offers_response_json
from gpusupply.contract import schemas
from gpusupply.core.inputs import BoundedInt
from gpusupply.services import offers

router = APIRouter(route_class=ApiRoute, tags=["Offers"], dependencies=[Depends(get_principal)], responses=responses(401, 503))

_DOCUMENT_SCHEMA = {"$ref": "#/components/schemas/OffersRequest"}
_EXAMPLE = "compute:\n  gpu_type: H100\n  gpu_count: 1\n  max_price_per_gpu_hour: 3\nregion: US\n"


@router.post(
    "/get_offers",
    response_model=schemas.OffersResponse,
    summary="Search offers across vendors",
    description=(
        "The body is a YAML document (`application/yaml`, `application/x-yaml` or `text/yaml`) or the same "
        "document as JSON (`application/json`); at most 64 KB; YAML anchors/aliases are refused. "
        "Paging with the `limit`/`offset` query parameters. Sorted by price per GPU-hour."
    ),
    responses=responses(413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": _DOCUMENT_SCHEMA, "example": _EXAMPLE},
                "application/x-yaml": {"schema": _DOCUMENT_SCHEMA},
                "text/yaml": {"schema": _DOCUMENT_SCHEMA},
                "application/json": {"schema": _DOCUMENT_SCHEMA},
            },
        }
    },
)
async def get_offers(
    request: Request,
    limit: Annotated[BoundedInt, Query(ge=1, le=offers.MAX_PAGE_SIZE)] = offers.DEFAULT_PAGE_SIZE,
    offset: Annotated[BoundedInt, Query(ge=0, le=offers.MAX_OFFSET)] = 0,
) -> Response:
    return await offers_answer(get_ctx(request), await request.body(), request.headers.get("content-type"), limit, offset)


async def offers_answer(ctx: ServiceContext, raw: bytes, content_type: str | None, limit: int, offset: int) -> Response:
    """The search's answer (this route's, and api/hot.py's)."""
    found = await offers.search_offers(ctx.catalog, raw, content_type, limit=limit, offset=offset)
    result = found.result
    # A result is shared by identical searches (catalog.search(shared=True)): rendered once.
    # Within one, offers are rendered once too (views.offer_json).
    if result.rendered is None:
        rest = schemas.OffersResponse(
            offers=[],
            total_count=result.total,
            filters_applied=found.filters_applied,
            limit=found.limit,
            offset=found.offset,
            partial=result.partial,
            failed_vendors=result.failed_vendors,
        )
        result.rendered = offers_response_json(rest, result.offers)
    return Response(result.rendered, media_type="application/json")


@router.get(
    "/offers/{offer_id}",
    response_model=schemas.OfferDetails,
    summary="One offer, from any replica, until it is cleaned up",
    responses=responses(404, 422),
)
async def get_offer(offer_id: UUID, ctx: ServiceContext = Depends(service_context)) -> schemas.OfferDetails:
    return offer_details(await offers.get_offer(ctx.catalog, offer_id))
