"""Procurement: `POST /procure_offer` and the status of a procured offer."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Response

from gpusupply.api.deps import ApiRoute, ServiceContext, get_ctx, get_principal, responses, service_context
from gpusupply.api.views import model_response, offer_status_out
from gpusupply.contract import schemas
from gpusupply.services import procurement
from gpusupply.services.keys import Principal
from gpusupply.services.offers import KNOWN_VENDORS

# The body as this server validates it: a `spec`'s vendor is one of its vendors. Made at run time,
# so type checkers are shown the contract's class it derives from.
if TYPE_CHECKING:
    ProcureBody = schemas.ProcureRequest
else:
    ProcureBody = schemas.procure_request_for(KNOWN_VENDORS)

router = APIRouter(route_class=ApiRoute, tags=["Procurement"], responses=responses(401, 503))


@router.post(
    "/procure_offer",
    response_model=schemas.ProcureResponse,
    summary="Procure an offer (or the cheapest offer matching a spec)",
    description=(
        "Writes the procurement and answers at once; the engine provisions in the background. "
        "Poll `GET /offers/{offer_id}/status` or `GET /resources/{id}`. With an `Idempotency-Key` header a "
        "retried request gets the first answer again (header `Idempotent-Replayed: true`); the same key with a "
        "different body is a 422. A procurement your budget does not allow is a 402 naming the limit and the "
        "numbers (docs/cost.md). A `spec` that matches no offer now is a 409 saying which condition empties it "
        "(503 with Retry-After while a vendor's catalog cannot be read), unless `wait_for_capacity: true`."
    ),
    responses=responses(402, 404, 409, 410, 413, 422, 503),
)
async def procure_offer(
    body: ProcureBody,
    response: Response,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> dict:
    outcome = await procurement.procure(
        ctx.db,
        ctx.catalog,
        principal,
        offer_id=body.offer_id,
        spec=body.spec,
        ssh_public_key=body.ssh_public_key,
        cloud_init=body.cloud_init,
        resource_name=body.resource_name,
        cluster_name=body.cluster_name,
        idempotency_key=idempotency_key,
        # (auto_delete and wait_for_capacity left out when unset: older requests' fingerprints stay the same)
        body=body.model_dump(mode="json", exclude=_unset_extensions(body)),
        auto_delete=body.auto_delete.model_dump(exclude_unset=True) if body.auto_delete is not None else None,
        wait_for_capacity=body.wait_for_capacity,
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.response


def _unset_extensions(body: schemas.ProcureRequest) -> set[str]:
    unset = set()
    if body.auto_delete is None:
        unset.add("auto_delete")
    if not body.wait_for_capacity:
        unset.add("wait_for_capacity")
    return unset


@router.get(
    "/offers/{offer_id}/status",
    response_model=schemas.OfferStatusOut,
    summary="Provisioning status of your procurement of an offer",
    responses=responses(404, 422),
)
async def offer_status(offer_id: UUID, request: Request, principal: Principal = Depends(get_principal)) -> Response:
    return await offer_status_answer(get_ctx(request), principal, offer_id)


async def offer_status_answer(ctx: ServiceContext, principal: Principal, offer_id: UUID) -> Response:
    """The status's answer (this route's, and api/hot.py's)."""
    return model_response(offer_status_out(await procurement.offer_status(ctx.db, principal, offer_id)))
