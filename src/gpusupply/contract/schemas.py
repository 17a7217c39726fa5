"""Request and response models of the HTTP API, with the compute-desk field names: errors,
discovery, offers' answers, procurement, resources and health (the cost routes' models are in
`cost.py`, the get_offers document in `offers.py`).

Plain pydantic: the server validates and documents with these, and the SDK parses with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model

from gpusupply.contract.cost import AutoDeleteIn, AutoDeleteOut
from gpusupply.contract.offers import ComputeSpec, OffersRequest, offers_request_for
from gpusupply.core.inputs import CheckedModel

__all__ = [
    "ComputeSpec",
    "OffersRequest",
]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, for a human.")


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(description='Where: e.g. ["body", "compute", "gpu_type"].')
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """422, in FastAPI's shape."""

    detail: list[ValidationErrorItem]


# ----- discovery --------------------------------------------------------------------------------
class VendorCapabilities(BaseModel):
    stop_start: bool
    reboot: bool
    idempotency_key: bool
    marker: bool
    spot: bool
    stopped_bills_gpu: bool


class VendorCatalogInfo(BaseModel):
    fetched_at: datetime | None = Field(description="When this process last read the vendor's offers.")
    offers: int = Field(description="Offers in the current catalog.")
    error: str | None = Field(description="Why the last read failed, when it did.")


class VendorInfo(BaseModel):
    id: str = Field(examples=["vast"])
    mode: Literal["live", "sandbox"]
    degraded: bool = Field(description="The vendor's last instance listing failed or looked wrong.")
    degraded_reason: str | None = None
    degraded_since: datetime | None = None
    capabilities: VendorCapabilities
    catalog: VendorCatalogInfo
    foreign_instances: int = Field(
        0, description="Instances another gpusupply installation made on this vendor account, as the last listing showed: never touched."
    )


# ----- offers -----------------------------------------------------------------------------------
class StorageDetail(BaseModel):
    name: str
    size_gb: float | None
    type: str | None = None
    storage_class: str | None = None
    vendor_class: str | None = None
    vendor_region: str | None = None
    price_per_gb_month: float | None = None
    monthly_cost: float | None = None
    hourly_cost: float | None = None
    persistent: bool = False


class OfferOut(BaseModel):
    offer_id: UUID
    gpu_type: str = Field(description="Canonical GPU name, e.g. nvidia-h100-sxm5-80gb.")
    gpu_family: str
    gpu_count: int
    vendor: str
    region: str = Field(description="US, EU, APAC or Other.")
    gpu_price_per_hour: float = Field(description="USD per GPU-hour, boot disk included.")
    boot_disk_in_gb: float | None
    created_at: datetime = Field(description="When the offer was read from the vendor.")
    vendor_region: str
    contract_type: Literal["ondemand", "spot"]
    type: str = Field("vm", description="vm, or cluster: node_count identical nodes placed together (docs/api.md, Clusters).")
    vcpu_count: float | None
    memory_in_gb: float | None
    storage_details: list[StorageDetail]
    storage_price_per_hour: float = Field(description="0: the boot disk is included in gpu_price_per_hour.")
    total_price_per_hour: float
    expires_at: datetime
    deployment_type: str | None = Field(None, description="vm, infiniband-cluster or co-located-cluster.")
    node_count: int = 1
    gpus_per_node: int
    infiniband_bandwidth_gbps: float | None = Field(None, description="Between the nodes of a cluster; 0 without InfiniBand.")
    cluster_storage_gb: float | None = None
    # Ours.
    gpu_memory_in_gb: float
    country: str | None


class OffersResponse(BaseModel):
    offers: list[OfferOut] = Field(description="The page, cheapest per GPU-hour first.")
    total_count: int = Field(description="All matching offers (not only this page).")
    filters_applied: dict[str, Any]
    limit: int
    offset: int
    partial: bool = Field(description="True when some vendor's offers could not be read (see failed_vendors).")
    failed_vendors: dict[str, str] = Field(description="vendor -> why its offers are missing.")


class OfferDetails(BaseModel):
    offer_id: UUID
    gpu_type: str
    gpu_family: str
    gpu_count: int
    vendor: str
    region: str
    status: Literal["available", "procured", "failed", "expired"]
    created_at: datetime
    contract_type: Literal["ondemand", "spot"] | None = None
    gpu_price_per_hour: float | None = None
    boot_disk_in_gb: float | None = None
    vcpu_count: float | None = None
    memory_in_gb: float | None = None
    total_price_per_hour: float | None = None
    expires_at: datetime | None = None
    procured_at: datetime | None = None
    vendor_region: str | None = None
    type: str = "vm"
    node_count: int = 1
    gpus_per_node: int | None = None


# ----- procurement ------------------------------------------------------------------------------
class ProcureRequest(CheckedModel):
    """Procure one offer (`offer_id`), or the cheapest offer matching `spec` (a get_offers document)."""

    model_config = ConfigDict(extra="forbid")

    offer_id: UUID | None = None
    spec: OffersRequest | None = Field(None, description="Instead of offer_id: the engine picks offers (extension).")
    ssh_public_key: str = Field(min_length=1, max_length=16384, description="One OpenSSH public key line.")
    cloud_init: str | None = Field(None, description="Starts with '#cloud-config' or '#!/'; at most 64 KB.")
    resource_name: str | None = Field(None, max_length=200)
    cluster_name: str | None = Field(None, max_length=200, description="The cluster's name (cluster offers only; generated when left out).")
    auto_delete: AutoDeleteIn | None = Field(None, description="Delete the resource at a time or spend (extension, docs/cost.md).")
    wait_for_capacity: bool = Field(
        False,
        description="With spec: accept it even when no offer matches now; the engine waits for capacity "
        "until the provisioning timeout (extension). Without it such a spec is a 409.",
    )


def procure_request_for(vendor_ids: Sequence[str]) -> type[ProcureRequest]:
    """`ProcureRequest` whose `spec` is `offers_request_for(vendor_ids)`: the model a server
    validates with (cached: one class per list, named `ProcureRequest` in the OpenAPI document)."""
    return _procure_request_for(tuple(vendor_ids))


@cache
def _procure_request_for(vendor_ids: tuple[str, ...]) -> type[ProcureRequest]:
    spec = ProcureRequest.model_fields["spec"]
    checked: Any = offers_request_for(vendor_ids)  # a class made at run time: a value to mypy, not a type
    return create_model(
        ProcureRequest.__name__,
        __base__=ProcureRequest,
        __doc__=ProcureRequest.__doc__,
        __module__=__name__,
        spec=(checked | None, Field(spec.default, description=spec.description)),
    )


class ProcureResponse(BaseModel):
    offer_id: UUID | None = Field(description="Null for a procurement by spec.")
    status: Literal["procured", "failed", "provisioning_in_progress"]
    procured_at: datetime | None
    resource_ids: list[UUID]
    error: str | None


class InstanceOut(BaseModel):
    resource_id: UUID
    status: str
    external_ip: str | None
    ssh_command: str | None
    ssh_port: int | None


class OfferStatusOut(BaseModel):
    offer_id: UUID
    status: str = Field(description="The offer's status: available, procured, failed or expired.")
    created_at: datetime | None
    procurement_status: Literal["pending", "provisioning_started", "provisioning_in_progress", "ready", "failed"]
    instances: list[InstanceOut]
    resource_ids: list[UUID]
    progress: str = Field(examples=["1/1 instances running"])
    failure_reason: str | None
    procured_at: datetime | None


# ----- resources --------------------------------------------------------------------------------
class Access(BaseModel):
    external_ip: str | None
    internal_ip: str | None
    ssh_command: str | None
    ssh_port: int | None


class LinkedResource(BaseModel):
    resource_id: UUID
    resource_type: str
    status: str
    link_type: str = Field(description="member: a node of this cluster; member_of: the cluster this node belongs to.")
    linked_since: datetime | None = None
    name: str | None = None
    linked_until: datetime | None = None


class OfferHistoryEntry(BaseModel):
    offer_id: UUID | None
    offer_type: str = "vm"
    role: str = Field(description="primary: the offer in use; otherwise the outcome of a failover attempt.")
    created_at: datetime | None
    vendor: str | None = None
    reason: str | None = None


class ResourceSummary(BaseModel):
    resource_id: UUID
    resource_type: str = Field("vm", description="vm (one instance), or cluster (its nodes are vm resources, see linked_resources).")
    name: str | None
    status: str
    vendor: str | None
    vendor_region: str | None
    region: str | None
    gpu_type: str | None
    gpu_family: str | None
    gpu_count: int | None
    offer_id: UUID | None
    pricing_total_hourly: float | None = Field(description="USD per hour, fixed at procurement.")
    created_at: datetime
    access: Access
    cost_so_far: float | None = Field(None, description="USD billed so far (extension, docs/cost.md).")


class ResourceDetail(ResourceSummary):
    status_message: str | None
    spec: dict[str, Any]
    linked_resources: list[LinkedResource]
    offer_history: list[OfferHistoryEntry]
    valid_from: datetime | None = Field(description="When the vendor first reported it running.")
    valid_to: datetime | None = Field(description="When the vendor confirmed it ended.")
    last_synced_at: datetime | None
    procurement_id: UUID
    vendor_status: str | None
    pending_action: str | None
    delete_requested_at: datetime | None
    events_url: str
    auto_delete: AutoDeleteOut | None = Field(None, description="Limits at which the resource is deleted (docs/cost.md).")


class ResourceList(BaseModel):
    resources: list[ResourceSummary]
    total_count: int
    limit: int
    offset: int


class DeleteResourceResponse(BaseModel):
    resource_id: UUID
    status: str
    message: str


class ActionResponse(BaseModel):
    resource_id: UUID
    status: str
    action: Literal["start", "stop", "reboot"]
    message: str


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description="status_change, attempt, alert, orphan_terminated, ...")
    from_status: str | None
    to_status: str | None
    reason: str | None
    data: dict[str, Any] | None


class EventList(BaseModel):
    resource_id: UUID
    events: list[EventOut] = Field(description="Oldest first.")
    total_count: int
    limit: int
    offset: int


# ----- health -----------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    database: str = Field(description="ok, or why the database could not be reached.")
    migration: str | None = Field(description="The schema revision the database is at.")
    migration_head: str = Field(description="The revision this version of the code expects.")
