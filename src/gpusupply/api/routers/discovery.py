"""Discovery: what can be asked for (GPU families, vendors, regions, contract types)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.contract import schemas
from gpusupply.core.gpus import families
from gpusupply.core.offers import CONTRACT_TYPES
from gpusupply.core.regions import REGION_GROUPS
from gpusupply.services.vendors import describe_vendors

router = APIRouter(route_class=ApiRoute, tags=["Discovery"], dependencies=[Depends(get_principal)], responses=responses(401, 503))


@router.get("/available_gpus", response_model=dict[str, list[str]], summary="GPU families and their canonical names")
async def available_gpus() -> dict[str, list[str]]:
    return families()


@router.get("/available_vendors", response_model=list[schemas.VendorInfo], summary="Enabled vendors, their mode and health")
async def available_vendors(ctx: ServiceContext = Depends(service_context)) -> list[schemas.VendorInfo]:
    described = await describe_vendors(ctx.db, ctx.vendors, ctx.catalog)
    return [
        schemas.VendorInfo(
            id=d.vendor,
            mode=d.mode,
            degraded=d.degraded,
            degraded_reason=d.degraded_reason,
            degraded_since=d.degraded_since,
            capabilities=schemas.VendorCapabilities(**d.capabilities),
            catalog=schemas.VendorCatalogInfo(fetched_at=d.catalog.fetched_at, offers=d.catalog.offers, error=d.catalog.error),
            foreign_instances=d.foreign_instances,
        )
        for d in described
    ]


@router.get("/available_regions", response_model=list[str], summary="Region groups")
async def available_regions() -> list[str]:
    return list(REGION_GROUPS)


@router.get("/available_contracts", response_model=list[str], summary="Contract types")
async def available_contracts() -> list[str]:
    return list(CONTRACT_TYPES)
