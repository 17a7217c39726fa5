"""Prices over time as client methods: the history, the cheapest now, and price alerts (buy-below
orders); blocking and asyncio side by side (docs/prices.md)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from gpusupply.client import calls
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.offers import OffersRequest
from gpusupply.contract.prices import (
    AlertFiringList,
    AlertProcureIn,
    PriceAlertDeleted,
    PriceAlertIn,
    PriceAlertList,
    PriceAlertOut,
    PriceHistory,
    PricesNow,
)


def alert_body(
    spec: OffersRequest | dict[str, Any], threshold: float, *, name: str | None, procure: AlertProcureIn | dict[str, Any] | None
) -> PriceAlertIn:
    """The alert document: `procure` given makes it a buy-below order (`then: procure`)."""
    then: Literal["notify", "procure"] = "procure" if procure is not None else "notify"
    return PriceAlertIn.model_validate({"spec": spec, "threshold": threshold, "name": name, "then": then, "procure": procure})


class BlockingPrices(BlockingDriver):
    """Price history, the cheapest now, and price alerts: the methods of `GpuSupply`."""

    def price_history(
        self, gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
        vendor: str | None = None, since: str | None = None, until: str | None = None, step: str | None = None,
        across_vendors: bool = False,
    ) -> PriceHistory:
        """A series per vendor and contract type; `since`/`until` ISO times or durations back (`7d`)."""
        return self._call(calls.price_history(
            gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor,
            since=since, until=until, step=step, across_vendors=across_vendors,
        ))

    def prices_now(
        self, gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
        vendor: str | None = None,
    ) -> PricesNow:
        return self._call(calls.prices_now(gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor))

    def create_price_alert(
        self, spec: OffersRequest | dict[str, Any], threshold: float, *, name: str | None = None,
        procure: AlertProcureIn | dict[str, Any] | None = None,
    ) -> PriceAlertOut:
        """Watch the cheapest offer matching `spec`; with `procure` (ssh_public_key, ...), buy below `threshold`."""
        return self._call(calls.create_price_alert(alert_body(spec, threshold, name=name, procure=procure)))

    def list_price_alerts(self) -> PriceAlertList:
        return self._call(calls.list_price_alerts())

    def get_price_alert(self, alert_id: UUID | str) -> PriceAlertOut:
        return self._call(calls.get_price_alert(alert_id))

    def delete_price_alert(self, alert_id: UUID | str) -> PriceAlertDeleted:
        return self._call(calls.delete_price_alert(alert_id))

    def list_price_alert_firings(self, alert_id: UUID | str, *, limit: int = 100) -> AlertFiringList:
        return self._call(calls.list_price_alert_firings(alert_id, limit=limit))


class AsyncPrices(AsyncDriver):
    """The same methods for `AsyncGpuSupply`, awaited."""

    async def price_history(
        self, gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
        vendor: str | None = None, since: str | None = None, until: str | None = None, step: str | None = None,
        across_vendors: bool = False,
    ) -> PriceHistory:
        return await self._call(calls.price_history(
            gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor,
            since=since, until=until, step=step, across_vendors=across_vendors,
        ))

    async def prices_now(
        self, gpu_type: str, *, gpu_count: int | None = None, region: str | None = None, contract_type: str | None = None,
        vendor: str | None = None,
    ) -> PricesNow:
        return await self._call(calls.prices_now(gpu_type, gpu_count=gpu_count, region=region, contract_type=contract_type, vendor=vendor))

    async def create_price_alert(
        self, spec: OffersRequest | dict[str, Any], threshold: float, *, name: str | None = None,
        procure: AlertProcureIn | dict[str, Any] | None = None,
    ) -> PriceAlertOut:
        return await self._call(calls.create_price_alert(alert_body(spec, threshold, name=name, procure=procure)))

    async def list_price_alerts(self) -> PriceAlertList:
        return await self._call(calls.list_price_alerts())

    async def get_price_alert(self, alert_id: UUID | str) -> PriceAlertOut:
        return await self._call(calls.get_price_alert(alert_id))

    async def delete_price_alert(self, alert_id: UUID | str) -> PriceAlertDeleted:
        return await self._call(calls.delete_price_alert(alert_id))

    async def list_price_alert_firings(self, alert_id: UUID | str, *, limit: int = 100) -> AlertFiringList:
        return await self._call(calls.list_price_alert_firings(alert_id, limit=limit))
