"""One builder per API route: the request to send and the type of its answer (pure, no I/O).

Both clients use these, so a new route is one builder here plus a one-line method in each
client (`client.py`).
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from gpusupply.api.schemas import (
    ActionResponse,
    DeleteResourceResponse,
    EventList,
    Health,
    OfferDetails,
    OffersRequest,
    OffersResponse,
    OfferStatusOut,
    ProcureRequest,
    ProcureResponse,
    Readiness,
    ResourceDetail,
    ResourceList,
    VendorInfo,
)
from gpusupply.client.flows import IDEMPOTENCY_HEADER, Call, Request

Action = Literal["start", "stop", "reboot"]
ACTIONS: tuple[Action, ...] = ("start", "stop", "reboot")


def as_uuid(value: UUID | str, what: str = "id") -> UUID:
    """`value` as a UUID, or ValueError naming what it should have been (keeps paths well-formed)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be a UUID such as 3c90c3cc-0d44-4b50-8888-8dd25736052a, got {value!r}") from None


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones (booleans as the API spells them)."""
    params: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return params


def _get(path: str, answer: Any, **params: Any) -> Call[Any]:
    return Call(Request("GET", path, _params(**params)), answer)


# ----- discovery ---------------------------------------------------------------------------------
def available_gpus() -> Call[dict[str, list[str]]]:
    return _get("/available_gpus", dict[str, list[str]])


def available_vendors() -> Call[list[VendorInfo]]:
    return _get("/available_vendors", list[VendorInfo])


def available_regions() -> Call[list[str]]:
    return _get("/available_regions", list[str])


def available_contracts() -> Call[list[str]]:
    return _get("/available_contracts", list[str])


# ----- offers ------------------------------------------------------------------------------------
def offers_query(
    gpu_type: str,
    *,
    gpu_count: int = 1,
    max_price_per_gpu_hour: float | None = None,
    region: str | None = None,
    contract_type: Literal["ondemand", "spot"] | None = None,
    vendor: Literal["vast", "fal", "nebula"] | None = None,
) -> OffersRequest:
    """A get_offers document from keyword arguments (validated like the server does)."""
    compute: dict[str, Any] = {"gpu_type": gpu_type, "gpu_count": gpu_count}
    if max_price_per_gpu_hour is not None:
        compute["max_price_per_gpu_hour"] = max_price_per_gpu_hour
    if contract_type is not None:
        compute["contract_type"] = contract_type
    return OffersRequest.model_validate({"compute": compute, "vendor": vendor, "region": region})


def get_offers(query: OffersRequest, *, limit: int = 100, offset: int = 0) -> Call[OffersResponse]:
    body = query.model_dump(mode="json", exclude_none=True)
    return Call(Request("POST", "/get_offers", _params(limit=limit, offset=offset), json=body), OffersResponse)


def get_offer(offer_id: UUID | str) -> Call[OfferDetails]:
    return _get(f"/offers/{as_uuid(offer_id, 'offer_id')}", OfferDetails)


def get_offer_status(offer_id: UUID | str) -> Call[OfferStatusOut]:
    return _get(f"/offers/{as_uuid(offer_id, 'offer_id')}/status", OfferStatusOut)


# ----- procurement -------------------------------------------------------------------------------
def procure(body: ProcureRequest, *, idempotency_key: str) -> Call[ProcureResponse]:
    """Always with an Idempotency-Key, so a retried procurement never procures twice."""
    return Call(
        Request(
            "POST",
            "/procure_offer",
            json=body.model_dump(mode="json", exclude_none=True),
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        ),
        ProcureResponse,
    )


# ----- resources ---------------------------------------------------------------------------------
def list_resources(
    *,
    status: str | None = None,
    vendor: str | None = None,
    offer_id: UUID | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Call[ResourceList]:
    offer = as_uuid(offer_id, "offer_id") if offer_id is not None else None
    return _get("/resources", ResourceList, status=status, vendor=vendor, offer_id=offer, limit=limit, offset=offset)


def get_resource(resource_id: UUID | str, *, force_refresh: bool = False) -> Call[ResourceDetail]:
    return _get(f"/resources/{as_uuid(resource_id, 'resource_id')}", ResourceDetail, force_refresh=force_refresh or None)


def delete_resource(resource_id: UUID | str, *, force: bool = False) -> Call[DeleteResourceResponse]:
    path = f"/resources/{as_uuid(resource_id, 'resource_id')}"
    return Call(Request("DELETE", path, _params(force=force or None)), DeleteResourceResponse)


def resource_action(resource_id: UUID | str, action: Action) -> Call[ActionResponse]:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    return Call(Request("POST", f"/resources/{as_uuid(resource_id, 'resource_id')}/{action}"), ActionResponse)


def list_events(resource_id: UUID | str, *, limit: int = 500, offset: int = 0) -> Call[EventList]:
    return _get(f"/resources/{as_uuid(resource_id, 'resource_id')}/events", EventList, limit=limit, offset=offset)


# ----- health ------------------------------------------------------------------------------------
def health() -> Call[Health]:
    return _get("/healthz", Health)


def readiness() -> Call[Readiness]:
    """Not ready is an answer here (503 with the same body), not an error."""
    return Call(Request("GET", "/readyz"), Readiness, ok=frozenset({200, 503}))
