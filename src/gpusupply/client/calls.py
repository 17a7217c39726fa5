"""One builder per API route: the request to send and the type of its answer (pure, no I/O).

Both clients use these, so a new route is one builder here plus a one-line method in each
client (`client.py` and its method groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from gpusupply.client.flows import IDEMPOTENCY_HEADER, Call, Request
from gpusupply.contract.cost import (
    BudgetIn,
    BudgetOut,
    DeliveryList,
    ResourcePatch,
    UsageReportOut,
    WebhookCreated,
    WebhookDeleted,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from gpusupply.contract.fleets import FleetCreate, FleetDetail, FleetList, FleetPatch
from gpusupply.contract.prices import (
    AlertFiringList,
    PriceAlertDeleted,
    PriceAlertIn,
    PriceAlertList,
    PriceAlertOut,
    PriceHistory,
    PricesNow,
)
from gpusupply.contract.schemas import (
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
    vendor: str | None = None,
) -> OffersRequest:
    """A get_offers document from keyword arguments (validated like the server does, but for
    `vendor`: the server knows its vendors and answers an unknown one with a 422 naming them)."""
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
            json=body.model_dump(mode="json", exclude_none=True, exclude=None if body.wait_for_capacity else {"wait_for_capacity"}),
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


def update_resource(resource_id: UUID | str, patch: ResourcePatch) -> Call[ResourceDetail]:
    """PATCH: only the fields set on the patch are sent (a field set to None removes that limit)."""
    path = f"/resources/{as_uuid(resource_id, 'resource_id')}"
    return Call(Request("PATCH", path, json=patch.model_dump(mode="json", exclude_unset=True)), ResourceDetail)


# ----- cost: usage and budget --------------------------------------------------------------------
When = date | datetime | str


def _when(value: When | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def _group_by(value: Sequence[str] | str | None) -> str | None:
    return value if value is None or isinstance(value, str) else ",".join(value)


def usage(
    *,
    start: When | None = None,
    end: When | None = None,
    group_by: Sequence[str] | str | None = None,
    tenant: str | None = None,
) -> Call[UsageReportOut]:
    """Cost and hours over [start, end), grouped by any of tenant, vendor, gpu_family, day."""
    return _get("/usage", UsageReportOut, **{"from": _when(start)}, to=_when(end), group_by=_group_by(group_by),
                tenant=tenant, format="json")


def usage_csv(
    *,
    start: When | None = None,
    end: When | None = None,
    group_by: Sequence[str] | str | None = None,
    tenant: str | None = None,
) -> Call[str]:
    return _get("/usage", str, **{"from": _when(start)}, to=_when(end), group_by=_group_by(group_by),
                tenant=tenant, format="csv")


def get_budget(tenant: str | None = None) -> Call[BudgetOut]:
    return _get("/budget", BudgetOut, tenant=tenant)


def put_budget(body: BudgetIn, tenant: str | None = None) -> Call[BudgetOut]:
    """The whole budget (a limit left out is removed); PUT, so a retry is harmless."""
    return Call(Request("PUT", "/budget", _params(tenant=tenant), json=body.model_dump(mode="json")), BudgetOut)


# ----- webhooks ----------------------------------------------------------------------------------
def create_webhook(body: WebhookIn) -> Call[WebhookCreated]:
    return Call(Request("POST", "/webhooks", json=body.model_dump(mode="json", exclude_none=True)), WebhookCreated)


def list_webhooks() -> Call[WebhookList]:
    return _get("/webhooks", WebhookList)


def get_webhook(webhook_id: UUID | str) -> Call[WebhookOut]:
    return _get(f"/webhooks/{as_uuid(webhook_id, 'webhook_id')}", WebhookOut)


def delete_webhook(webhook_id: UUID | str) -> Call[WebhookDeleted]:
    return Call(Request("DELETE", f"/webhooks/{as_uuid(webhook_id, 'webhook_id')}"), WebhookDeleted)


def list_deliveries(
    webhook_id: UUID | str, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> Call[DeliveryList]:
    path = f"/webhooks/{as_uuid(webhook_id, 'webhook_id')}/deliveries"
    return _get(path, DeliveryList, status=status, limit=limit, offset=offset)


# ----- fleets ------------------------------------------------------------------------------------
def create_fleet(body: FleetCreate) -> Call[FleetDetail]:
    """Not retried into a second fleet: a fleet's name is unique among your live fleets (409)."""
    return Call(Request("POST", "/fleets", json=body.model_dump(mode="json", exclude_none=True)), FleetDetail)


def list_fleets(*, include_deleted: bool = False, limit: int = 100, offset: int = 0) -> Call[FleetList]:
    return _get("/fleets", FleetList, include_deleted=include_deleted or None, limit=limit, offset=offset)


def get_fleet(fleet_id: UUID | str) -> Call[FleetDetail]:
    return _get(f"/fleets/{as_uuid(fleet_id, 'fleet_id')}", FleetDetail)


def update_fleet(fleet_id: UUID | str, patch: FleetPatch) -> Call[FleetDetail]:
    """PATCH: only the fields set on the patch are sent (`max_hourly_spend=None` set removes the cap)."""
    path = f"/fleets/{as_uuid(fleet_id, 'fleet_id')}"
    return Call(Request("PATCH", path, json=patch.model_dump(mode="json", exclude_unset=True)), FleetDetail)


def delete_fleet(fleet_id: UUID | str) -> Call[FleetDetail]:
    return Call(Request("DELETE", f"/fleets/{as_uuid(fleet_id, 'fleet_id')}"), FleetDetail)


def list_fleet_events(fleet_id: UUID | str, *, limit: int = 500, offset: int = 0) -> Call[EventList]:
    return _get(f"/fleets/{as_uuid(fleet_id, 'fleet_id')}/events", EventList, limit=limit, offset=offset)


# ----- health ------------------------------------------------------------------------------------
# ----- prices ------------------------------------------------------------------------------------
def _market_params(gpu_type: str, gpu_count: int | None, region: str | None, contract_type: str | None, vendor: str | None) -> dict[str, Any]:
    return _params(gpu_type=gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor)


def price_history(
    gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
    vendor: str | None = None, since: str | None = None, until: str | None = None, step: str | None = None,
    across_vendors: bool = False,
) -> Call[PriceHistory]:
    params = _market_params(gpu_type, gpu_count, region, contract_type, vendor)
    params.update(_params(since=since, until=until, step=step, across_vendors=across_vendors or None))
    return Call(Request("GET", "/prices/history", params=params), PriceHistory)


def prices_now(
    gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
    vendor: str | None = None,
) -> Call[PricesNow]:
    return Call(Request("GET", "/prices/now", params=_market_params(gpu_type, gpu_count, region, contract_type, vendor)), PricesNow)


def create_price_alert(body: PriceAlertIn) -> Call[PriceAlertOut]:
    return Call(Request("POST", "/price_alerts", json=body.model_dump(mode="json", exclude_none=True)), PriceAlertOut)


def list_price_alerts() -> Call[PriceAlertList]:
    return _get("/price_alerts", PriceAlertList)


def get_price_alert(alert_id: UUID | str) -> Call[PriceAlertOut]:
    return _get(f"/price_alerts/{as_uuid(alert_id, 'alert_id')}", PriceAlertOut)


def delete_price_alert(alert_id: UUID | str) -> Call[PriceAlertDeleted]:
    return Call(Request("DELETE", f"/price_alerts/{as_uuid(alert_id, 'alert_id')}"), PriceAlertDeleted)


def list_price_alert_firings(alert_id: UUID | str, *, limit: int = 100) -> Call[AlertFiringList]:
    return _get(f"/price_alerts/{as_uuid(alert_id, 'alert_id')}/firings", AlertFiringList, limit=limit)


def health() -> Call[Health]:
    return _get("/healthz", Health)


def readiness() -> Call[Readiness]:
    """Not ready is an answer here (503 with the same body), not an error."""
    return Call(Request("GET", "/readyz"), Readiness, ok=frozenset({200, 503}))
