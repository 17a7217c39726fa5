"""A validated `get_offers` document as an `OfferQuery`, and back as the stored document: shared by
the search and procurement services and the price alerts the engine evaluates."""

from __future__ import annotations

from typing import Any

from gpusupply.contract.offers import OffersRequest
from gpusupply.core.errors import UnprocessableError
from gpusupply.core.gpus import resolve_gpu_query, unknown_gpu_message
from gpusupply.core.offers import OfferQuery
from gpusupply.core.regions import REGION_GROUPS, parse_region_group


def query_from_request(request: OffersRequest, *, loc: tuple[str | int, ...] = ("body",)) -> OfferQuery:
    family, canonical = resolve_gpu_query(request.compute.gpu_type)
    if family is None and canonical is None:
        raise UnprocessableError(unknown_gpu_message(request.compute.gpu_type), loc=(*loc, "compute", "gpu_type"))
    region = None
    if request.region is not None:
        region = parse_region_group(request.region)
        if region is None:
            raise UnprocessableError(
                f"unknown region {request.region!r}; use one of {', '.join(REGION_GROUPS)}", loc=(*loc, "region")
            )
    return OfferQuery(
        gpu_family=family,
        gpu_canonical=canonical,
        gpu_count=request.compute.gpu_count,
        max_price_per_gpu_hour=request.compute.max_price_per_gpu_hour,
        contract_type=request.compute.contract_type,
        vendor=request.vendor,
        region=region,
        node_count=request.compute.node_count,
        interconnect=request.compute.interconnect,
    )


def normalized_document(request: OffersRequest, query: OfferQuery) -> dict[str, Any]:
    """The document as stored for a procure-by-spec: canonical spellings, parseable again."""
    compute: dict[str, Any] = {
        "gpu_type": query.gpu_canonical or query.gpu_family,
        "gpu_count": query.gpu_count,
    }
    if query.max_price_per_gpu_hour is not None:
        compute["max_price_per_gpu_hour"] = query.max_price_per_gpu_hour
    if query.contract_type is not None:
        compute["contract_type"] = query.contract_type
    if query.node_count is not None:
        compute["node_count"] = query.node_count
    if query.interconnect is not None:
        compute["interconnect"] = query.interconnect
    document: dict[str, Any] = {"compute": compute}
    if query.vendor is not None:
        document["vendor"] = query.vendor
    if query.region is not None:
        document["region"] = query.region
    return document
