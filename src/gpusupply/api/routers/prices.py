"""Prices over time: the history of a GPU's markets, the cheapest now, and price alerts (buy-below
orders) (docs/prices.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from gpusupply.api.deps import ApiRoute, ServiceContext, get_principal, responses, service_context
from gpusupply.contract.prices import (
    AlertFiringList,
    AlertFiringOut,
    MarketNow,
    PriceAlertDeleted,
    PriceAlertIn,
    PriceAlertList,
    PriceAlertOut,
    PriceChange,
    PriceHistory,
    PricePointOut,
    PriceSeries,
    PricesNow,
    price_alert_request_for,
)
from gpusupply.core.inputs import BoundedInt, Text
from gpusupply.core.prices import MAX_POINTS_PER_SERIES, step_name
from gpusupply.db.models import PriceAlert, PriceAlertFiring, utcnow
from gpusupply.services import prices
from gpusupply.services.keys import Principal
from gpusupply.services.offers import KNOWN_VENDORS

# The body as this server validates it: a `spec`'s vendor is one of its vendors (as /procure_offer).
if TYPE_CHECKING:
    PriceAlertBody = PriceAlertIn
else:
    PriceAlertBody = price_alert_request_for(KNOWN_VENDORS)

router = APIRouter(route_class=ApiRoute, tags=["Prices"], responses=responses(401, 503))

GpuType = Annotated[Text, Query(description="A family (`H100`) or a canonical model (`nvidia-h100-sxm5-80gb`).")]
GpuCount = Annotated[BoundedInt | None, Query(description="GPUs per offer.")]
Region = Annotated[Text | None, Query(description="US, EU, APAC or Other.")]
Contract = Annotated[Text | None, Query(description="ondemand or spot.")]
Vendor = Annotated[Text | None, Query(description="One vendor; all when omitted.")]


def _change(now: float, then: float | None) -> PriceChange | None:
    if then is None or then <= 0:
        return None
    return PriceChange(then=then, change=round(now - then, 6), change_pct=round((now - then) / then * 100, 2))


@router.get(
    "/prices/history",
    response_model=PriceHistory,
    summary="A GPU's price history: a series per vendor and contract type",
    description=(
        "One point per catalog refresh and market is kept for 7 days, hourly points for 90 days, daily "
        "points after that; points are merged into buckets of `step` (`5m`, `15m`, `1h`, `6h`, `1d`, `7d`, "
        f"any duration of at least `1m`, or `auto`). A series holds at most {MAX_POINTS_PER_SERIES} points: "
        "a longer window needs a larger step (422 names one that fits). `since`/`until`: ISO 8601 times or "
        "durations back from now (`7d`); by default the last 24 h. `across_vendors=true`: one series per "
        "contract type over every vendor."
    ),
    responses=responses(422),
)
async def price_history(
    gpu_type: GpuType,
    gpu_count: GpuCount = None,
    region: Region = None,
    contract_type: Contract = None,
    vendor: Vendor = None,
    since: Annotated[Text | None, Query(description="ISO 8601 time, or a duration back from now (`7d`).")] = None,
    until: Annotated[Text | None, Query(description="ISO 8601 time, or a duration back from now; default now.")] = None,
    step: Annotated[Text | None, Query(description="Bucket width; `auto` (the default) keeps a series near 500 points.")] = None,
    across_vendors: bool = False,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> PriceHistory:
    query = prices.market_query(gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor)
    found = await prices.history(ctx.db, query, since=since, until=until, step=step, across_vendors=across_vendors)
    return PriceHistory(
        gpu_type=gpu_type,
        filters=query.applied(),
        since=found.since,
        until=found.until,
        step=step_name(found.step),
        step_seconds=found.step,
        series=[
            PriceSeries(
                vendor=s.vendor,
                contract_type=s.contract_type,
                points=[PricePointOut(at=p.at, min=p.min_price, median=p.median_price, max=p.max_price, offers=p.offers) for p in s.points],
            )
            for s in found.series
        ],
    )


@router.get(
    "/prices/now",
    response_model=PricesNow,
    summary="The cheapest offer per market now, and its change over 24 h and 7 days",
    description="A market is (vendor, GPU model, GPUs per offer, region group, contract type). Cheapest first.",
    responses=responses(422),
)
async def prices_now(
    gpu_type: GpuType,
    gpu_count: GpuCount = None,
    region: Region = None,
    contract_type: Contract = None,
    vendor: Vendor = None,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> PricesNow:
    query = prices.market_query(gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor)
    now = utcnow()
    rows, partial = await prices.prices_now(ctx.db, ctx.catalog, query, now=now)
    markets = [
        MarketNow(
            vendor=r.market.vendor, gpu_type=r.market.gpu_type, gpu_family=r.market.gpu_family, gpu_count=r.market.gpu_count,
            region=r.market.region, contract_type=r.market.contract_type, price=r.cheapest.offer.gpu_price_per_hour,
            offer_id=r.cheapest.offer_id, offers=r.offers,
            change_24h=_change(r.cheapest.offer.gpu_price_per_hour, r.then_24h),
            change_7d=_change(r.cheapest.offer.gpu_price_per_hour, r.then_7d),
        )
        for r in rows
    ]
    markets.sort(key=lambda m: (m.price, m.vendor, m.gpu_type, m.gpu_count, m.region, m.contract_type))
    return PricesNow(gpu_type=gpu_type, at=now, markets=markets, partial=partial)


# ----- alerts ----------------------------------------------------------------------------------------
def alert_out(alert: PriceAlert) -> PriceAlertOut:
    return PriceAlertOut(
        alert_id=alert.id, name=alert.name, spec=alert.spec, threshold=alert.threshold,
        then="procure" if alert.procure is not None else "notify", procure=alert.procure,
        state=alert.state,
        last_price=alert.last_price, evaluated_through=alert.evaluated_through, last_fired_at=alert.last_fired_at,
        procured_count=alert.procured_count, created_at=alert.created_at, firings_url=f"/price_alerts/{alert.id}/firings",
    )


def firing_out(firing: PriceAlertFiring) -> AlertFiringOut:
    return AlertFiringOut(
        firing_id=firing.id, at=firing.at,
        event_type=firing.event_type,
        price=firing.price, vendor=firing.vendor, offer_id=firing.offer_id, resource_id=firing.resource_id, note=firing.note,
    )


@router.post(
    "/price_alerts",
    status_code=201,
    response_model=PriceAlertOut,
    summary="Watch a price: webhook events price.below / price.above; with then: procure, a limit order",
    description=(
        "`spec` is a get_offers document, `threshold` USD per GPU-hour. Evaluated on every catalog refresh: "
        "when the cheapest match is at or under the threshold, `price.below` goes to your webhooks (at the "
        "first evaluation too, if it already holds); `price.above` when it goes back over threshold * (1 + "
        "hysteresis). `then: procure` with `procure` (ssh_public_key, cloud_init, resource_name, auto_delete "
        "with ttl_seconds/spend_limit, max_count): each price.below firing procures the cheapest match by "
        "spec, never above the threshold, once, within your budget; the event names the resource. "
        "At most 100 alerts per tenant (409)."
    ),
    responses=responses(409, 413, 422),
)
async def create_price_alert(
    body: PriceAlertBody, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> PriceAlertOut:
    return alert_out(await prices.create_alert(ctx.db, principal, body))


@router.get("/price_alerts", response_model=PriceAlertList, summary="Your price alerts")
async def list_price_alerts(principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)) -> PriceAlertList:
    return PriceAlertList(alerts=[alert_out(a) for a in await prices.list_alerts(ctx.db, principal)])


@router.get("/price_alerts/{alert_id}", response_model=PriceAlertOut, summary="One price alert", responses=responses(404, 422))
async def get_price_alert(
    alert_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> PriceAlertOut:
    return alert_out(await prices.get_alert(ctx.db, principal, alert_id))


@router.delete(
    "/price_alerts/{alert_id}",
    response_model=PriceAlertDeleted,
    summary="Delete a price alert and its firing history (what it procured stays)",
    responses=responses(404, 422),
)
async def delete_price_alert(
    alert_id: UUID, principal: Principal = Depends(get_principal), ctx: ServiceContext = Depends(service_context)
) -> PriceAlertDeleted:
    await prices.delete_alert(ctx.db, principal, alert_id)
    return PriceAlertDeleted(alert_id=alert_id)


@router.get(
    "/price_alerts/{alert_id}/firings",
    response_model=AlertFiringList,
    summary="The alert's firings, newest first, with what each procured",
    responses=responses(404, 422),
)
async def list_price_alert_firings(
    alert_id: UUID,
    limit: Annotated[BoundedInt, Query(ge=1, le=1000)] = 100,
    principal: Principal = Depends(get_principal),
    ctx: ServiceContext = Depends(service_context),
) -> AlertFiringList:
    return AlertFiringList(firings=[firing_out(f) for f in await prices.list_firings(ctx.db, principal, alert_id, limit=limit)])
