"""Shaping service results into the API's response models (one place, shared by the routers)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Response
from pydantic import BaseModel
from pydantic_core import to_json

from gpusupply.contract import fleets as fleet_schemas
from gpusupply.contract import schemas
from gpusupply.contract.cost import AutoDeleteOut
from gpusupply.core.offers import deployment_type
from gpusupply.db.models import Event, ResourceLike, utcnow
from gpusupply.domain.catalog import StoredOffer
from gpusupply.services.fleets import FleetView
from gpusupply.services.listing import ListedPage
from gpusupply.services.procurement import OfferStatus
from gpusupply.services.resources import Members, ssh_command


def offer_out(stored: StoredOffer) -> schemas.OfferOut:
    offer = stored.offer
    storage = [schemas.StorageDetail(name="boot", size_gb=offer.disk_gb, persistent=False)] if offer.disk_gb else []
    return schemas.OfferOut(
        offer_id=stored.offer_id,
        gpu_type=offer.gpu_type,
        gpu_family=offer.gpu_family,
        gpu_count=offer.gpu_count,
        vendor=offer.vendor,
        region=offer.region,
        gpu_price_per_hour=offer.gpu_price_per_hour,
        boot_disk_in_gb=offer.disk_gb,
        created_at=offer.fetched_at,
        vendor_region=offer.vendor_region,
        contract_type=offer.contract_type,
        vcpu_count=offer.vcpu_count,
        memory_in_gb=offer.memory_gb,
        storage_details=storage,
        storage_price_per_hour=0.0,
        total_price_per_hour=offer.total_price_per_hour,
        expires_at=stored.expires_at,
        type="cluster" if offer.node_count > 1 else "vm",
        deployment_type=deployment_type(offer),
        node_count=offer.node_count,
        gpus_per_node=offer.gpu_count // max(1, offer.node_count),
        infiniband_bandwidth_gbps=offer.infiniband_bandwidth_gbps if offer.node_count > 1 else 0.0,
        cluster_storage_gb=0.0 if offer.node_count > 1 else None,
        gpu_memory_in_gb=offer.gpu_memory_gb,
        country=offer.country,
    )


def offer_json(stored: StoredOffer) -> bytes:
    """`offer_out` as JSON bytes, rendered once per stored offer and reused by every search."""
    if stored.rendered is None:
        stored.rendered = offer_out(stored).model_dump_json().encode()
    return stored.rendered


def offers_response_json(response: schemas.OffersResponse, page: list[StoredOffer]) -> bytes:
    """The search answer as JSON: `response` (without offers) with the page's pre-rendered offers
    spliced in; the same bytes `response` with `offers` set would serialize to."""
    rest = response.model_dump_json().encode()
    head = b'{"offers":[]'
    assert rest.startswith(head), "OffersResponse must keep `offers` as its first field"
    return b'{"offers":[' + b",".join(offer_json(stored) for stored in page) + b"]" + rest[len(head):]


def offer_details(stored: StoredOffer) -> schemas.OfferDetails:
    offer = stored.offer
    return schemas.OfferDetails(
        offer_id=stored.offer_id,
        gpu_type=offer.gpu_type,
        gpu_family=offer.gpu_family,
        gpu_count=offer.gpu_count,
        vendor=offer.vendor,
        region=offer.region,
        status=stored.status,
        created_at=offer.fetched_at,
        contract_type=offer.contract_type,
        gpu_price_per_hour=offer.gpu_price_per_hour,
        boot_disk_in_gb=offer.disk_gb,
        vcpu_count=offer.vcpu_count,
        memory_in_gb=offer.memory_gb,
        total_price_per_hour=offer.total_price_per_hour,
        expires_at=stored.expires_at,
        procured_at=stored.procured_at,
        vendor_region=offer.vendor_region,
        type="cluster" if offer.node_count > 1 else "vm",
        node_count=offer.node_count,
        gpus_per_node=offer.gpu_count // max(1, offer.node_count),
    )


def _access_fields(resource: ResourceLike) -> dict[str, Any]:
    return {
        "external_ip": resource.external_ip,
        "internal_ip": None,
        "ssh_command": ssh_command(resource.external_ip, resource.ssh_host, resource.ssh_port, getattr(resource, "ssh_user", None)),
        "ssh_port": resource.ssh_port,
    }


def _access(resource: ResourceLike) -> schemas.Access:
    return schemas.Access(**_access_fields(resource))


def instance_out(resource: ResourceLike) -> schemas.InstanceOut:
    access = _access(resource)
    return schemas.InstanceOut(
        resource_id=resource.id,
        status=resource.status,
        external_ip=access.external_ip,
        ssh_command=access.ssh_command,
        ssh_port=access.ssh_port,
    )


def offer_status_out(status: OfferStatus) -> schemas.OfferStatusOut:
    return schemas.OfferStatusOut(
        offer_id=status.offer_id,
        status=status.status,
        created_at=status.created_at,
        procurement_status=status.procurement_status,
        instances=[instance_out(r) for r in status.resources if r.status != "pending" and r.resource_type != "cluster"],
        resource_ids=[r.id for r in status.resources],
        progress=status.progress,
        failure_reason=status.failure_reason,
        procured_at=status.procured_at,
    )


def _summary_fields(resource: ResourceLike) -> dict[str, Any]:
    """`ResourceSummary`'s fields but its cost (the last), as plain data of the types the model
    holds (floats as floats), so that they serialize as the model does without building it."""
    price = resource.price_per_hour
    return {
        "resource_id": _encodable_id(resource.id),
        "resource_type": getattr(resource, "resource_type", None) or "vm",
        "name": resource.name,
        "status": resource.status,
        "vendor": resource.vendor,
        "vendor_region": resource.vendor_region,
        "region": resource.region,
        "gpu_type": resource.gpu_type,
        "gpu_family": resource.gpu_family,
        "gpu_count": resource.gpu_count,
        "offer_id": _encodable_id(resource.offer_id),
        "pricing_total_hourly": float(price) if price is not None else None,
        "created_at": resource.created_at,
        "access": _access_fields(resource),
    }


def _rounded_cost(cost_so_far: float | None) -> float | None:
    return round(float(cost_so_far), 6) if cost_so_far is not None else None


def _encodable_id(value: UUID | None) -> UUID | str | None:
    """An id as pydantic's encoder takes it fastest: a stdlib UUID as it is; asyncpg's UUID
    subclass as its text (encoded as a UUID it cost 1.7 us against 0.1 us, measured)."""
    return value if value is None or type(value) is UUID else str(value)


def resource_list_json(page: ListedPage, costs: list[float], limit: int, offset: int) -> bytes:
    """`schemas.ResourceList` of a page as JSON, the bytes its models would give (tests/api/
    test_resources.py checks them) without building them. Each row but its cost is rendered once
    per page (`page.rendered`: a page is kept while nothing it shows changes, services/listing.py);
    an answer writes the costs of the moment between them."""
    if page.rendered is None:
        # '{"resource_id":...,"access":{...}' then ',"cost_so_far":' and the cost, as the model orders them
        page.rendered = [to_json(_summary_fields(read.resource))[:-1] + b',"cost_so_far":' for read in page.reads]
    rows = b"},".join(row + to_json(_rounded_cost(cost)) for row, cost in zip(page.rendered, costs, strict=True))
    return b"".join((
        b'{"resources":[', rows, b"}" if rows else b"", b'],"total_count":', to_json(page.total),
        b',"limit":', to_json(limit), b',"offset":', to_json(offset), b"}",
    ))


def model_response(model: BaseModel) -> Response:
    """A model answered as FastAPI answers a route's `response_model`: pydantic's JSON, by alias."""
    return Response(model.__pydantic_serializer__.to_json(model, by_alias=True), media_type="application/json")


def _spec(resource: ResourceLike) -> dict[str, Any]:
    offer = resource.offer_snapshot or {}
    spec = {
        "gpu_type": resource.gpu_type,
        "gpu_family": resource.gpu_family,
        "gpu_count": resource.gpu_count,
        "gpu_memory_in_gb": offer.get("gpu_memory_gb"),
        "vcpu_count": offer.get("vcpu_count"),
        "memory_in_gb": offer.get("memory_gb"),
        "boot_disk_in_gb": offer.get("disk_gb"),
        "contract_type": offer.get("contract_type"),
    }
    return {k: v for k, v in spec.items() if v is not None}


def _offer_history(resource: ResourceLike) -> list[schemas.OfferHistoryEntry]:
    """Failover attempts (procure by spec) in order, then the offer in use."""
    history = []
    for attempt in resource.attempts or []:
        if not isinstance(attempt, dict) or attempt.get("offer_id") == str(resource.offer_id):
            continue
        history.append(
            schemas.OfferHistoryEntry(
                offer_id=attempt.get("offer_id"),
                role=str(attempt.get("outcome") or "attempt"),
                created_at=attempt.get("at"),
                vendor=attempt.get("vendor"),
                reason=attempt.get("reason"),
            )
        )
    if resource.offer_id is not None:
        history.append(
            schemas.OfferHistoryEntry(
                offer_id=resource.offer_id, role="primary", created_at=resource.created_at, vendor=resource.vendor
            )
        )
    return history


def resource_detail(resource: ResourceLike, cost_so_far: float | None = None, members: Members | None = None) -> schemas.ResourceDetail:
    limits = resource.auto_delete_at is not None or resource.spend_limit is not None
    fields = _summary_fields(resource)
    fields["cost_so_far"] = _rounded_cost(members.cost_so_far if members and members.cost_so_far is not None else cost_so_far)
    if members is not None and members.hourly is not None:
        fields["pricing_total_hourly"] = round(members.hourly, 6)  # a cluster: its live nodes together
    links = [
        schemas.LinkedResource(
            resource_id=link.resource_id, resource_type=link.resource_type, status=link.status, link_type=link.link_type,
            linked_since=link.linked_since, linked_until=link.linked_until, name=link.name,
        )
        for link in (members.links if members else [])
    ]
    return schemas.ResourceDetail(
        **fields,
        auto_delete=AutoDeleteOut(delete_at=resource.auto_delete_at, spend_limit=resource.spend_limit) if limits else None,
        status_message=resource.status_message,
        spec=_spec(resource),
        linked_resources=links + fleet_links(resource),
        offer_history=_offer_history(resource),
        valid_from=resource.running_since,
        valid_to=resource.ended_at,
        last_synced_at=resource.last_synced_at,
        procurement_id=resource.procurement_id,
        vendor_status=resource.vendor_status,
        pending_action=resource.pending_action,
        delete_requested_at=resource.delete_requested_at,
        events_url=f"/resources/{resource.id}/events",
    )


def event_out(event: Event) -> schemas.EventOut:
    return schemas.EventOut(
        id=event.id,
        at=event.at,
        kind=event.kind,
        from_status=event.from_status,
        to_status=event.to_status,
        reason=event.reason,
        data=event.data,
    )


# ----- links and fleets ----------------------------------------------------------------------------
FLEET_LINK = "fleet_member"  # the resource is a member of the linked fleet (docs/fleets.md)


def fleet_links(resource: ResourceLike) -> list[schemas.LinkedResource]:
    """A fleet member links to its fleet (a read from services/reads.py carries the fleet's name
    and status)."""
    fleet_id = getattr(resource, "fleet_id", None)
    if fleet_id is None:
        return []
    return [
        schemas.LinkedResource(
            resource_id=fleet_id,
            resource_type="fleet",
            status=getattr(resource, "fleet_status", None) or "unknown",
            link_type=FLEET_LINK,
            linked_since=resource.created_at,
            name=getattr(resource, "fleet_name", None),
        )
    ]


def _fleet_fields(view: FleetView) -> dict[str, Any]:
    fleet = view.fleet
    return {
        "fleet_id": fleet.id,
        "name": fleet.name,
        "status": fleet.status,
        "status_message": fleet.status_message,
        "size": fleet.size,
        "counting": view.counting,
        "running": view.running,
        "spend_per_hour": round(view.spend_per_hour, 6),
        "spec": fleet.spec,
        "on_preemption": fleet.on_preemption,
        "placement": fleet.placement,
        "max_hourly_spend": fleet.max_hourly_spend,
        "created_at": fleet.created_at,
        "delete_requested_at": fleet.delete_requested_at,
        "deleted_at": fleet.deleted_at,
    }


def fleet_summary(view: FleetView) -> fleet_schemas.FleetSummary:
    return fleet_schemas.FleetSummary(**_fleet_fields(view))


def fleet_detail(view: FleetView) -> fleet_schemas.FleetDetail:
    return fleet_schemas.FleetDetail(
        **_fleet_fields(view),
        members=[
            fleet_schemas.FleetMember(
                resource_id=m.id, name=m.name, status=m.status, status_message=m.status_message, vendor=m.vendor,
                vendor_region=m.vendor_region, gpu_type=m.gpu_type, gpu_count=m.gpu_count, pricing_total_hourly=m.price_per_hour,
                created_at=m.created_at, running_since=m.running_since, access=_access(m),
            )
            for m in view.members
        ],
        cooldowns=[fleet_schemas.FleetCooldown.model_validate(c) for c in view.cooldowns(utcnow())],
        events=[event_out(e) for e in view.events],
    )
