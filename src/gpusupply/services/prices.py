"""Prices over time as the API and console ask for them (docs/prices.md): the history of a GPU's
markets, the cheapest per market now with its change, and a tenant's price alerts.

The history is written by the catalog (domain/price_history.py); alerts are evaluated by the
engine (domain/price_alerts.py). Here: reading and checking input, and the alerts' CRUD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select

from gpusupply.contract.prices import PriceAlertIn
from gpusupply.core.errors import ConflictError, NotFoundError, UnprocessableError
from gpusupply.core.gpus import resolve_gpu_query, unknown_gpu_message
from gpusupply.core.offers import OfferQuery
from gpusupply.core.prices import (
    MAX_POINTS_PER_SERIES,
    STEPS,
    Market,
    PricePoint,
    auto_step,
    bucket_start,
    combine_refreshes,
    market_of,
    merge,
    parse_duration,
    parse_instant,
    points_in_window,
)
from gpusupply.core.regions import REGION_GROUPS, parse_region_group
from gpusupply.db.models import PriceAlert, PriceAlertFiring, utcnow
from gpusupply.db.session import Database
from gpusupply.domain.catalog import OfferCatalog, StoredOffer
from gpusupply.domain.price_history import HistoryFilter, points_near, read_points
from gpusupply.services.budgets import auto_delete_values
from gpusupply.services.keys import Principal
from gpusupply.services.offers import normalized_document, parse_offer_query
from gpusupply.services.procurement import check_cloud_init, check_resource_name, check_ssh_public_key
from gpusupply.settings import VENDORS

DEFAULT_WINDOW = timedelta(hours=24)
MIN_STEP_SECONDS = 60
MAX_ALERTS_PER_TENANT = 100
# How far back from "24 h ago" a point may be and still stand for the price then.
CHANGE_TOLERANCE = timedelta(hours=2)
MAX_MARKET_OFFERS = 100_000  # every offer of a GPU (the catalog holds a few thousand per vendor)


@dataclass(frozen=True, slots=True)
class MarketQuery:
    """The filters shared by the history and "now", checked."""

    gpu_type: str  # as the caller wrote it
    gpu_family: str | None
    gpu_canonical: str | None
    gpu_count: int | None
    region: str | None
    contract_type: str | None
    vendor: str | None

    def history_filter(self) -> HistoryFilter:
        return HistoryFilter(self.gpu_family, self.gpu_canonical, self.gpu_count, self.region, self.contract_type, self.vendor)

    def offer_query(self) -> OfferQuery:
        return OfferQuery(
            gpu_family=self.gpu_family, gpu_canonical=self.gpu_canonical, gpu_count=self.gpu_count,
            contract_type=self.contract_type,  # type: ignore[arg-type]  # checked against the literal values
            vendor=self.vendor, region=self.region,  # type: ignore[arg-type]  # a RegionGroup, checked
        )

    def applied(self) -> dict[str, Any]:
        names = ("gpu_family", "gpu_canonical", "gpu_count", "region", "contract_type", "vendor")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def market_query(
    gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
    vendor: str | None = None,
) -> MarketQuery:
    """Check the query parameters; a 422 names the one that is wrong."""
    family, canonical = resolve_gpu_query(gpu_type)
    if family is None and canonical is None:
        raise UnprocessableError(unknown_gpu_message(gpu_type), loc=("query", "gpu_type"))
    group = None
    if region is not None:
        group = parse_region_group(region)
        if group is None:
            raise UnprocessableError(f"unknown region {region!r}; use one of {', '.join(REGION_GROUPS)}", loc=("query", "region"))
    if contract_type is not None and contract_type not in ("ondemand", "spot"):
        raise UnprocessableError("contract_type must be ondemand or spot", loc=("query", "contract_type"))
    if vendor is not None and vendor not in VENDORS:
        raise UnprocessableError(f"unknown vendor {vendor!r}; one of {', '.join(VENDORS)}", loc=("query", "vendor"))
    if gpu_count is not None and not 1 <= gpu_count <= 1024:
        raise UnprocessableError("gpu_count must be between 1 and 1024", loc=("query", "gpu_count"))
    return MarketQuery(gpu_type, family, canonical, gpu_count, group, contract_type, vendor)


# ----- history ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Series:
    vendor: str | None
    contract_type: str
    points: list[PricePoint]


@dataclass(slots=True)
class History:
    query: MarketQuery
    since: datetime
    until: datetime
    step: int
    series: list[Series]


def history_window(since: str | None, until: str | None, step: str | None, now: datetime) -> tuple[datetime, datetime, int]:
    """(since, until, step seconds) from the query, bounded: a series holds at most
    MAX_POINTS_PER_SERIES points, so a year at 5 minutes is refused with the step that would do."""
    end = now if until is None else parse_instant(until, now)
    if end is None:
        raise UnprocessableError("until must be an ISO 8601 time or a duration back from now like 1h", loc=("query", "until"))
    try:
        start = end - DEFAULT_WINDOW if since is None else parse_instant(since, now)
    except OverflowError:  # `until` in year 1
        start = None
    if start is None:
        raise UnprocessableError("since must be an ISO 8601 time or a duration back from now like 7d", loc=("query", "since"))
    if start >= end:
        raise UnprocessableError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})", loc=("query", "since"))
    window = (end - start).total_seconds()
    if step is None or step == "auto":
        seconds = auto_step(window)
    else:
        parsed = STEPS.get(step) or parse_duration(step)
        if parsed is None or parsed < MIN_STEP_SECONDS:
            raise UnprocessableError(
                f"step must be auto or a duration of at least 1m like {', '.join(STEPS)}", loc=("query", "step")
            )
        seconds = parsed
    points = points_in_window(window, seconds)
    if points > MAX_POINTS_PER_SERIES:
        finer_ok = next((name for name, s in STEPS.items() if points_in_window(window, s) <= MAX_POINTS_PER_SERIES), None)
        hint = f"; step={finer_ok} fits" if finer_ok else "; shorten the window"
        raise UnprocessableError(
            f"{points} points per series asked for (window / step); at most {MAX_POINTS_PER_SERIES}{hint}",
            loc=("query", "step"),
        )
    return start, end, seconds


async def history(
    db: Database, query: MarketQuery, *, since: str | None, until: str | None, step: str | None,
    across_vendors: bool = False, now: datetime | None = None,
) -> History:
    start, end, seconds = history_window(since, until, step, now or utcnow())
    points = await read_points(db, query.history_filter(), start, end)
    groups: dict[tuple[str | None, str], list[PricePoint]] = {}
    for point in points:
        vendor = None if across_vendors else point.market.vendor
        groups.setdefault((vendor, point.market.contract_type), []).append(point)
    series = [
        Series(vendor, contract, bucketed(group, seconds, vendor, contract, query))
        for (vendor, contract), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    ]
    return History(query, start, end, seconds, series)


def bucketed(points: Sequence[PricePoint], step: int, vendor: str | None, contract: str, query: MarketQuery) -> list[PricePoint]:
    """A series' points: the markets of one refresh combined, then merged per `step` bucket (pure)."""
    label = Market(vendor or "*", query.gpu_canonical or "*", query.gpu_family or "*", query.gpu_count or 0, query.region or "*", contract)
    buckets: dict[datetime, list[PricePoint]] = {}
    for point in combine_refreshes(points, label):
        buckets.setdefault(bucket_start(point.at, step), []).append(point)
    return [merge(group, label, at) for at, group in sorted(buckets.items())]


# ----- now -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class MarketPrice:
    market: Market
    cheapest: StoredOffer
    offers: int
    then_24h: float | None
    then_7d: float | None


async def prices_now(db: Database, catalog: OfferCatalog, query: MarketQuery, *, now: datetime | None = None) -> tuple[list[MarketPrice], bool]:
    """The cheapest offer per market now (from the catalog), with the market's cheapest price 24 h
    and 7 days ago (from the history). Also whether some vendors' catalogs could not be read."""
    now = now or utcnow()
    found = await catalog.search(query.offer_query(), limit=MAX_MARKET_OFFERS)
    cheapest: dict[Market, StoredOffer] = {}
    counts: dict[Market, int] = {}
    for stored in found.offers:  # cheapest first
        market = market_of(stored.offer)
        cheapest.setdefault(market, stored)
        counts[market] = counts.get(market, 0) + 1
    day = await points_near(db, query.history_filter(), now - timedelta(days=1), CHANGE_TOLERANCE)
    week = await points_near(db, query.history_filter(), now - timedelta(days=7), CHANGE_TOLERANCE)
    rows = [
        MarketPrice(
            market, stored, counts[market],
            day[market].min_price if market in day else None,
            week[market].min_price if market in week else None,
        )
        for market, stored in cheapest.items()
    ]
    return rows, found.partial


# ----- alerts ----------------------------------------------------------------------------------------
def _procure_fields(body: PriceAlertIn) -> dict[str, Any] | None:
    if body.then == "notify":
        if body.procure is not None:
            raise UnprocessableError("procure is only for then: procure", loc=("body", "procure"))
        return None
    if body.procure is None:
        raise UnprocessableError("then: procure needs procure (at least ssh_public_key)", loc=("body", "procure"))
    fields = body.procure
    auto_delete: dict[str, Any] | None = None
    if fields.auto_delete is not None:
        if fields.auto_delete.delete_at is not None:
            raise UnprocessableError(
                "a buy-below order takes ttl_seconds (counted from its firing), not delete_at", loc=("body", "procure", "auto_delete", "delete_at")
            )
        auto_delete = fields.auto_delete.model_dump(exclude_none=True, exclude={"delete_at"})
        auto_delete_values(auto_delete, utcnow(), loc=("body", "procure", "auto_delete"))  # checked now, applied at the firing
    return {
        "ssh_public_key": check_ssh_public_key(fields.ssh_public_key),
        "cloud_init": check_cloud_init(fields.cloud_init),
        "resource_name": check_resource_name(fields.resource_name),
        "auto_delete": auto_delete,
        "max_count": fields.max_count,
    }


async def create_alert(db: Database, principal: Principal, body: PriceAlertIn) -> PriceAlert:
    request, query = parse_offer_query(body.spec.model_dump(exclude_none=True), loc=("body", "spec"))
    spec = normalized_document(request, query)
    spec["compute"].pop("max_price_per_gpu_hour", None)  # the threshold is the bound
    name = check_resource_name(body.name) if body.name is not None else None
    alert = PriceAlert(
        tenant_id=principal.tenant_id, name=name, spec=spec, threshold=body.threshold, state="new",
        procure=_procure_fields(body), procured_count=0, created_at=utcnow(),
    )
    async with db.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(PriceAlert).where(PriceAlert.tenant_id == principal.tenant_id))).scalar_one()
        if count >= MAX_ALERTS_PER_TENANT:
            raise ConflictError(f"at most {MAX_ALERTS_PER_TENANT} price alerts per tenant; delete one first")
        session.add(alert)
    return alert


async def list_alerts(db: Database, principal: Principal) -> list[PriceAlert]:
    async with db.session() as session:
        rows = await session.execute(
            select(PriceAlert).where(PriceAlert.tenant_id == principal.tenant_id).order_by(PriceAlert.created_at, PriceAlert.id)
        )
        return list(rows.scalars().all())


async def get_alert(db: Database, principal: Principal, alert_id: UUID) -> PriceAlert:
    async with db.session() as session:
        alert = await session.get(PriceAlert, alert_id)
    if alert is None or alert.tenant_id != principal.tenant_id:
        raise NotFoundError(f"price alert {alert_id} not found")
    return alert


async def delete_alert(db: Database, principal: Principal, alert_id: UUID) -> None:
    """Delete the alert and its firing history (what it procured stays, with its own history)."""
    async with db.transaction() as session:
        alert = await session.get(PriceAlert, alert_id)
        if alert is None or alert.tenant_id != principal.tenant_id:
            raise NotFoundError(f"price alert {alert_id} not found")
        await session.execute(sql_delete(PriceAlertFiring).where(PriceAlertFiring.alert_id == alert_id))
        await session.delete(alert)


async def list_firings(db: Database, principal: Principal, alert_id: UUID, *, limit: int = 100) -> list[PriceAlertFiring]:
    await get_alert(db, principal, alert_id)
    async with db.session() as session:
        rows = await session.execute(
            select(PriceAlertFiring)
            .where(PriceAlertFiring.alert_id == alert_id)
            .order_by(PriceAlertFiring.at.desc(), PriceAlertFiring.id)
            .limit(limit)
        )
        return list(rows.scalars().all())
