"""The request and answer models of the API: the server's own pydantic models (`api/schemas.py`),
which import nothing server-side, so client and server share one set and cannot drift apart.

Answers are parsed leniently (fields a newer server adds are ignored); request models refuse
unknown fields, as the server does.
"""

from __future__ import annotations

from gpusupply.api.schemas import (
    Access,
    ActionResponse,
    ComputeSpec,
    DeleteResourceResponse,
    EventList,
    EventOut,
    Health,
    InstanceOut,
    LinkedResource,
    OfferDetails,
    OfferHistoryEntry,
    OfferOut,
    OffersRequest,
    OffersResponse,
    OfferStatusOut,
    ProcureRequest,
    ProcureResponse,
    Readiness,
    ResourceDetail,
    ResourceList,
    ResourceSummary,
    StorageDetail,
    VendorCapabilities,
    VendorCatalogInfo,
    VendorInfo,
)
from gpusupply.core.states import FINAL_STATUSES, LIVE_STATUSES, ResourceStatus

__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "Access",
    "ActionResponse",
    "ComputeSpec",
    "DeleteResourceResponse",
    "EventList",
    "EventOut",
    "Health",
    "InstanceOut",
    "LinkedResource",
    "OfferDetails",
    "OfferHistoryEntry",
    "OfferOut",
    "OfferStatusOut",
    "OffersRequest",
    "OffersResponse",
    "ProcureRequest",
    "ProcureResponse",
    "Readiness",
    "ResourceDetail",
    "ResourceList",
    "ResourceStatus",
    "ResourceSummary",
    "StorageDetail",
    "VendorCapabilities",
    "VendorCatalogInfo",
    "VendorInfo",
]
