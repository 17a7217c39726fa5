"""Request and response models of the fleet routes (docs/fleets.md). Plain pydantic, like
`schemas.py`: the server and the SDK share them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model

from gpusupply.contract.offers import OffersRequest, offers_request_for
from gpusupply.contract.schemas import Access, EventOut
from gpusupply.core.inputs import CheckedModel

MAX_FLEET_SIZE = 1000  # core.fleets.MAX_FLEET_SIZE (the contract imports no server code)


class FleetCreate(CheckedModel):
    """A fleet: keep `size` resources of `spec` running, replacing the ones a vendor takes back."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Unique among your fleets that are not deleted.")
    spec: OffersRequest = Field(description="What each member is: the same document as a get_offers body.")
    size: int = Field(ge=0, le=MAX_FLEET_SIZE, description="Members wanted.")
    ssh_public_key: str = Field(min_length=1, max_length=16384, description="One OpenSSH public key line, on every member.")
    cloud_init: str | None = Field(None, description="Starts with '#cloud-config' or '#!/'; at most 64 KB.")
    on_preemption: Literal["replace", "shrink"] = Field(
        "replace", description="replace: a member the vendor takes back is replaced; shrink: the size goes down by one."
    )
    placement: Literal["spread", "pack"] = Field(
        "spread", description="spread: prefer vendor-regions with fewer members; pack: prefer those with more."
    )
    max_hourly_spend: float | None = Field(None, description="USD/h cap on the members' prices together.")


def fleet_create_for(vendor_ids: Sequence[str]) -> type[FleetCreate]:
    """`FleetCreate` whose `spec` is `offers_request_for(vendor_ids)` (cached; named `FleetCreate`)."""
    return _fleet_create_for(tuple(vendor_ids))


@cache
def _fleet_create_for(vendor_ids: tuple[str, ...]) -> type[FleetCreate]:
    spec = FleetCreate.model_fields["spec"]
    checked: Any = offers_request_for(vendor_ids)  # a class made at run time: a value to mypy, not a type
    return create_model(
        FleetCreate.__name__,
        __base__=FleetCreate,
        __doc__=FleetCreate.__doc__,
        __module__=__name__,
        spec=(checked, Field(description=spec.description)),
    )


class FleetPatch(CheckedModel):
    """What may change: a field left out keeps its value; `max_hourly_spend: null` removes the cap."""

    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(None, ge=0, le=MAX_FLEET_SIZE)
    on_preemption: Literal["replace", "shrink"] | None = None
    placement: Literal["spread", "pack"] | None = None
    max_hourly_spend: float | None = None


class FleetMember(BaseModel):
    resource_id: UUID
    name: str | None
    status: str
    status_message: str | None
    vendor: str | None
    vendor_region: str | None
    gpu_type: str | None
    gpu_count: int | None
    pricing_total_hourly: float | None
    created_at: datetime
    running_since: datetime | None
    access: Access


class FleetCooldown(BaseModel):
    vendor: str
    vendor_region: str
    until: datetime


class FleetSummary(BaseModel):
    fleet_id: UUID
    name: str
    status: Literal["active", "degraded", "deleting", "deleted"]
    status_message: str | None
    size: int = Field(description="Members wanted.")
    counting: int = Field(description="Members that count toward the size (pending to running; not deleting).")
    running: int = Field(description="Members running now.")
    spend_per_hour: float = Field(description="USD/h of the members that count (chosen offers' prices).")
    spec: dict[str, Any]
    on_preemption: Literal["replace", "shrink"]
    placement: Literal["spread", "pack"]
    max_hourly_spend: float | None
    created_at: datetime
    delete_requested_at: datetime | None
    deleted_at: datetime | None


class FleetDetail(FleetSummary):
    members: list[FleetMember] = Field(description="Live members (deleting ones included), oldest first.")
    cooldowns: list[FleetCooldown] = Field(description="Vendor-regions replacements avoid until then, after a preemption.")
    events: list[EventOut] = Field(description="The fleet's latest events, oldest first.")


class FleetList(BaseModel):
    fleets: list[FleetSummary]
    total_count: int
    limit: int
    offset: int
