"""The one offer model every vendor maps onto, the query users send, and pure matching.

`Offer` is what an adapter returns; `OfferQuery` is a parsed `get_offers` body; `matches` is the
single predicate that says whether an offer fits a query; `offer_to_dict` / `offer_from_dict` are
an offer's JSON form (stored offers, snapshots, a procurement's offer). Indexes (domain/offer_index.py) may
pre-filter for speed, but every answer must agree with `matches`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gpusupply.core.regions import RegionGroup

ContractType = Literal["ondemand", "spot"]
CONTRACT_TYPES: tuple[ContractType, ...] = ("ondemand", "spot")


@dataclass(slots=True)
class Offer:
    vendor: str  # "vast" | "fal" | "nebula" | "lambda"
    vendor_offer_id: str  # the vendor's id for what create needs (ask id, product id, instance type+region)
    gpu_type: str  # canonical name, e.g. nvidia-h100-sxm5-80gb
    gpu_family: str  # e.g. H100
    gpu_count: int
    gpu_memory_gb: float
    gpu_price_per_hour: float  # USD per GPU-hour, boot disk included
    total_price_per_hour: float  # USD per hour for the whole offer
    contract_type: ContractType
    vendor_region: str
    region: RegionGroup
    fetched_at: datetime
    gpu_known: bool = True
    vcpu_count: float | None = None
    memory_gb: float | None = None
    disk_gb: float | None = None
    country: str | None = None
    available: bool = True
    # What the adapter needs to create from this offer (ask id, product id, image id...).
    vendor_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """A parsed, validated `get_offers` body. Exactly one of gpu_family / gpu_canonical is set."""

    gpu_family: str | None = None
    gpu_canonical: str | None = None
    gpu_count: int | None = None
    max_price_per_gpu_hour: float | None = None
    contract_type: ContractType | None = None
    vendor: str | None = None
    region: RegionGroup | None = None


def matches(offer: Offer, query: OfferQuery) -> bool:
    if not offer.available:
        return False
    if query.gpu_canonical is not None and offer.gpu_type != query.gpu_canonical:
        return False
    if query.gpu_family is not None and offer.gpu_family != query.gpu_family:
        return False
    if query.gpu_count is not None and offer.gpu_count != query.gpu_count:
        return False
    if query.max_price_per_gpu_hour is not None and offer.gpu_price_per_hour > query.max_price_per_gpu_hour:
        return False
    if query.contract_type is not None and offer.contract_type != query.contract_type:
        return False
    if query.vendor is not None and offer.vendor != query.vendor:
        return False
    return query.region is None or offer.region == query.region


def price_key(offer: Offer) -> tuple[float, float, str, str]:
    """Sort order of every offer list: cheapest per GPU-hour first, then cheapest in total."""
    return (offer.gpu_price_per_hour, offer.total_price_per_hour, offer.vendor, offer.vendor_offer_id)


# ----- JSON form ---------------------------------------------------------------------------------
_DATETIME_FIELDS = ("fetched_at",)
_OFFER_FIELDS = {f.name for f in dataclasses.fields(Offer)}


def offer_to_dict(offer: Offer) -> dict[str, Any]:
    """The whole offer as JSON-safe data (vendor_data included), for DB rows and snapshots."""
    data = {f: getattr(offer, f) for f in _OFFER_FIELDS}
    data["vendor_data"] = dict(offer.vendor_data)
    for name in _DATETIME_FIELDS:
        data[name] = data[name].isoformat()
    return data


def offer_from_dict(data: dict[str, Any]) -> Offer:
    """Inverse of `offer_to_dict`. Keys it does not know (written by a newer version) are ignored."""
    values = {k: v for k, v in data.items() if k in _OFFER_FIELDS}
    for name in _DATETIME_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    values["vendor_data"] = dict(values.get("vendor_data") or {})
    return Offer(**values)
