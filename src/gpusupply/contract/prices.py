"""Request and response models of the price routes: history, the cheapest now, and price alerts
(docs/prices.md). Plain pydantic, shared by the server and the SDK."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model

from gpusupply.contract.cost import AutoDeleteIn
from gpusupply.contract.offers import OffersRequest, offers_request_for
from gpusupply.core.inputs import CheckedModel


# ----- history and now -----------------------------------------------------------------------------
class PricePointOut(BaseModel):
    at: datetime = Field(description="Start of the bucket (UTC, aligned on the step).")
    min: float = Field(description="Cheapest price per GPU-hour seen in the bucket (USD).")
    median: float = Field(description="Median of the refreshes' medians (USD per GPU-hour).")
    max: float = Field(description="Highest price per GPU-hour seen in the bucket (USD).")
    offers: float = Field(description="Offers on the market, the mean over the bucket's refreshes.")


class PriceSeries(BaseModel):
    vendor: str | None = Field(description="The vendor; null for a series across vendors.")
    contract_type: str
    points: list[PricePointOut]


class PriceHistory(BaseModel):
    gpu_type: str = Field(description="The GPU family or canonical model the history is for.")
    filters: dict[str, Any]
    since: datetime
    until: datetime
    step: str = Field(description="The bucket width (`5m`, `1h`, `1d`, ...).")
    step_seconds: int
    series: list[PriceSeries]


class PriceChange(BaseModel):
    then: float = Field(description="The market's cheapest price per GPU-hour back then (USD).")
    change: float = Field(description="Now minus then (USD per GPU-hour).")
    change_pct: float = Field(description="The change in percent of the price then.")


class MarketNow(BaseModel):
    vendor: str
    gpu_type: str
    gpu_family: str
    gpu_count: int
    region: str
    contract_type: str
    price: float = Field(description="The cheapest offer's price per GPU-hour (USD).")
    offer_id: UUID = Field(description="The cheapest offer (procure it with POST /procure_offer).")
    offers: int = Field(description="Offers on this market now.")
    change_24h: PriceChange | None = Field(description="Null when the history does not reach back 24 h.")
    change_7d: PriceChange | None


class PricesNow(BaseModel):
    gpu_type: str
    at: datetime
    markets: list[MarketNow] = Field(description="One row per market, cheapest first.")
    partial: bool = Field(False, description="Some vendors' catalogs could not be read.")


# ----- alerts --------------------------------------------------------------------------------------
class AlertProcureIn(CheckedModel):
    """What a buy-below order procures with when it fires (the procure_offer fields)."""

    model_config = ConfigDict(extra="forbid")

    ssh_public_key: str = Field(min_length=1, max_length=16384, description="One OpenSSH public key line.")
    cloud_init: str | None = Field(None, description="Starts with '#cloud-config' or '#!/'; at most 64 KB.")
    resource_name: str | None = Field(None, max_length=200)
    auto_delete: AutoDeleteIn | None = Field(
        None, description="ttl_seconds (counted from the firing) and/or spend_limit; delete_at is refused."
    )
    max_count: int = Field(1, ge=1, le=100, strict=True, description="Resources this alert may procure over its life.")


class PriceAlertIn(CheckedModel):
    model_config = ConfigDict(extra="forbid")

    spec: OffersRequest = Field(description="A get_offers document: which offers the alert watches.")
    threshold: float = Field(gt=0, le=10_000, allow_inf_nan=False, description="USD per GPU-hour.")
    name: str | None = Field(None, max_length=200)
    then: Literal["notify", "procure"] = Field("notify", description="`procure`: a limit order (needs `procure`).")
    procure: AlertProcureIn | None = None


def price_alert_request_for(vendor_ids: Sequence[str]) -> type[PriceAlertIn]:
    """`PriceAlertIn` whose `spec` names one of `vendor_ids`: the model a server validates with
    (cached: one class, named `PriceAlertIn` in the OpenAPI document, sharing `OffersRequest`)."""
    return _price_alert_request_for(tuple(vendor_ids))


@cache
def _price_alert_request_for(vendor_ids: tuple[str, ...]) -> type[PriceAlertIn]:
    spec = PriceAlertIn.model_fields["spec"]
    checked: Any = offers_request_for(vendor_ids)  # a class made at run time: a value to mypy, not a type
    return create_model(
        PriceAlertIn.__name__,
        __base__=PriceAlertIn,
        __doc__=PriceAlertIn.__doc__,
        __module__=__name__,
        spec=(checked, Field(description=spec.description)),
    )


class PriceAlertOut(BaseModel):
    alert_id: UUID
    name: str | None
    spec: dict[str, Any]
    threshold: float
    then: Literal["notify", "procure"]
    procure: dict[str, Any] | None = Field(description="The procurement's fields (the SSH key as given).")
    state: Literal["new", "below", "above"] = Field(description="`new` until its first evaluation.")
    last_price: float | None = Field(description="The cheapest match at the last evaluation (USD per GPU-hour).")
    evaluated_through: datetime | None = Field(description="The catalog refresh it was last evaluated on.")
    last_fired_at: datetime | None
    procured_count: int
    created_at: datetime
    firings_url: str


class PriceAlertList(BaseModel):
    alerts: list[PriceAlertOut]


class AlertFiringOut(BaseModel):
    firing_id: UUID
    at: datetime
    event_type: Literal["price.below", "price.above"]
    price: float | None = Field(description="The cheapest match; null when nothing matched any more.")
    vendor: str | None
    offer_id: UUID | None
    resource_id: UUID | None = Field(description="What a buy-below order procured at this firing.")
    note: str | None = Field(description="Why nothing was procured, when a buy-below order did not procure.")


class AlertFiringList(BaseModel):
    firings: list[AlertFiringOut]


class PriceAlertDeleted(BaseModel):
    alert_id: UUID
    deleted: bool = True
