"""Offer search and procurement as client methods, blocking and asyncio side by side (a route is
added to both at once)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import UUID

from gpusupply.client import calls
from gpusupply.client.base import Contract
from gpusupply.client.drivers import AsyncDriver, BlockingDriver
from gpusupply.contract.cost import AutoDeleteIn
from gpusupply.contract.schemas import (
    OfferDetails,
    OfferOut,
    OffersRequest,
    OffersResponse,
    OfferStatusOut,
    ProcureResponse,
)


class BlockingOffers(BlockingDriver):
    """Offer search and procurement: the methods of `GpuSupply`."""

    # ----- offers --------------------------------------------------------------------------------
    def get_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: str | None = None,
        query: OffersRequest | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> OffersResponse:
        """One page of offers, cheapest per GPU-hour first (give `gpu_type` and filters, or `query`).
        `vendor` is a vendor id the server has (`available_vendors()`); another is a BadRequestError."""
        document = self._query(gpu_type, query, gpu_count, max_price_per_gpu_hour, region, contract_type, vendor)
        return self._call(calls.get_offers(document, limit=limit, offset=offset))

    def iter_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: str | None = None,
        query: OffersRequest | None = None,
        page_size: int = 100,
    ) -> Iterator[OfferOut]:
        """Every matching offer, page after page, cheapest first."""
        document = self._query(gpu_type, query, gpu_count, max_price_per_gpu_hour, region, contract_type, vendor)
        return self._iterate(self._offers_flow(document, page_size))

    def get_offer(self, offer_id: UUID | str) -> OfferDetails:
        return self._call(calls.get_offer(offer_id))

    def get_offer_status(self, offer_id: UUID | str) -> OfferStatusOut:
        """Your procurement of an offer: procurement_status, instances, progress."""
        return self._call(calls.get_offer_status(offer_id))

    # ----- procurement ---------------------------------------------------------------------------
    def procure(
        self,
        offer_id: UUID | str | None = None,
        *,
        ssh_public_key: str,
        spec: OffersRequest | None = None,
        cloud_init: str | None = None,
        resource_name: str | None = None,
        idempotency_key: str | None = None,
        auto_delete: AutoDeleteIn | None = None,
        wait_for_capacity: bool = False,
        cluster_name: str | None = None,
    ) -> ProcureResponse:
        """Procure an offer, or (with `spec`) the cheapest offer matching a get_offers document.

        Answers at once; the resource provisions in the background (see `wait_ready`). Sent with
        an Idempotency-Key (yours, or a new one per call), so the SDK's retries never procure twice.
        `auto_delete` (e.g. `AutoDeleteIn(ttl_seconds=3600, spend_limit=20)`) deletes it at a time or
        spend. A procurement the budget does not allow raises BudgetExceededError (402); a spec no
        offer matches now raises ConflictError (409) unless `wait_for_capacity`.
        A cluster offer (`offer.type == "cluster"`; search with `gpu_count` above one node's, or
        `query=OffersRequest(compute=ComputeSpec(..., node_count=2, interconnect="infiniband"))`)
        makes a cluster resource named `cluster_name`, then its nodes: `resource_ids` lists them
        all, the cluster first (docs/api.md, Clusters).
        """
        call = self._procure_call(
            offer_id, spec, ssh_public_key, cloud_init, resource_name, idempotency_key, auto_delete, wait_for_capacity,
            cluster_name,
        )
        return self._call(call)


class AsyncOffers(AsyncDriver):
    """Offer search and procurement: the methods of `AsyncGpuSupply` (the same, awaited)."""

    # ----- offers --------------------------------------------------------------------------------
    async def get_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: str | None = None,
        query: OffersRequest | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> OffersResponse:
        document = self._query(gpu_type, query, gpu_count, max_price_per_gpu_hour, region, contract_type, vendor)
        return await self._call(calls.get_offers(document, limit=limit, offset=offset))

    def iter_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: str | None = None,
        query: OffersRequest | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[OfferOut]:
        document = self._query(gpu_type, query, gpu_count, max_price_per_gpu_hour, region, contract_type, vendor)
        return self._iterate(self._offers_flow(document, page_size))

    async def get_offer(self, offer_id: UUID | str) -> OfferDetails:
        return await self._call(calls.get_offer(offer_id))

    async def get_offer_status(self, offer_id: UUID | str) -> OfferStatusOut:
        return await self._call(calls.get_offer_status(offer_id))

    # ----- procurement ---------------------------------------------------------------------------
    async def procure(
        self,
        offer_id: UUID | str | None = None,
        *,
        ssh_public_key: str,
        spec: OffersRequest | None = None,
        cloud_init: str | None = None,
        resource_name: str | None = None,
        idempotency_key: str | None = None,
        auto_delete: AutoDeleteIn | None = None,
        wait_for_capacity: bool = False,
        cluster_name: str | None = None,
    ) -> ProcureResponse:
        call = self._procure_call(
            offer_id, spec, ssh_public_key, cloud_init, resource_name, idempotency_key, auto_delete, wait_for_capacity,
            cluster_name,
        )
        return await self._call(call)
