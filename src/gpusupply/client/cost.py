"""Cost as client methods: usage reports and budgets (docs/cost.md); blocking and asyncio side
by side."""

from __future__ import annotations

from collections.abc import Sequence

from gpusupply.client import calls
from gpusupply.client.calls import When
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.cost import BudgetOut, UsageReportOut


class BlockingCost(BlockingDriver):
    """Usage and budgets: the methods of `GpuSupply`."""

    def usage(
        self,
        *,
        start: When | None = None,
        end: When | None = None,
        group_by: Sequence[str] | str | None = None,
        tenant: str | None = None,
    ) -> UsageReportOut:
        """Cost and hours over [start, end) (default: this month), grouped by any of tenant,
        vendor, gpu_family, day (default vendor). `tenant`: admin keys only."""
        return self._call(calls.usage(start=start, end=end, group_by=group_by, tenant=tenant))

    def usage_csv(
        self,
        *,
        start: When | None = None,
        end: When | None = None,
        group_by: Sequence[str] | str | None = None,
        tenant: str | None = None,
    ) -> str:
        """The same report as CSV text."""
        return self._call(calls.usage_csv(start=start, end=end, group_by=group_by, tenant=tenant))

    def get_budget(self, *, tenant: str | None = None) -> BudgetOut:
        return self._call(calls.get_budget(tenant))

    def set_budget(
        self,
        *,
        max_hourly_spend: float | None = None,
        monthly_budget: float | None = None,
        delete_on_exhaustion: bool = False,
        tenant: str | None = None,
    ) -> BudgetOut:
        """Replace the whole budget: a limit left out (None) is removed."""
        body = self._budget(max_hourly_spend, monthly_budget, delete_on_exhaustion)
        return self._call(calls.put_budget(body, tenant))


class AsyncCost(AsyncDriver):
    """Usage and budgets: the methods of `AsyncGpuSupply` (the same, awaited)."""

    async def usage(
        self,
        *,
        start: When | None = None,
        end: When | None = None,
        group_by: Sequence[str] | str | None = None,
        tenant: str | None = None,
    ) -> UsageReportOut:
        return await self._call(calls.usage(start=start, end=end, group_by=group_by, tenant=tenant))

    async def usage_csv(
        self,
        *,
        start: When | None = None,
        end: When | None = None,
        group_by: Sequence[str] | str | None = None,
        tenant: str | None = None,
    ) -> str:
        return await self._call(calls.usage_csv(start=start, end=end, group_by=group_by, tenant=tenant))

    async def get_budget(self, *, tenant: str | None = None) -> BudgetOut:
        return await self._call(calls.get_budget(tenant))

    async def set_budget(
        self,
        *,
        max_hourly_spend: float | None = None,
        monthly_budget: float | None = None,
        delete_on_exhaustion: bool = False,
        tenant: str | None = None,
    ) -> BudgetOut:
        body = self._budget(max_hourly_spend, monthly_budget, delete_on_exhaustion)
        return await self._call(calls.put_budget(body, tenant))
