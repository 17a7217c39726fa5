"""What the blocking and the asyncio client share: the configuration (URL, API key, policies),
and the flows and request bodies their methods build. Sans-IO: the drivers (`drivers.py`)
perform the steps.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Collection
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from gpusupply import __version__
from gpusupply.client import calls
from gpusupply.client.flows import Call, Flow, RetryPolicy, WaitPolicy, paginate, wait_for_status
from gpusupply.contract.cost import AutoDeleteIn, BudgetIn, DeliveryList, ResourcePatch
from gpusupply.contract.schemas import (
    EventList,
    OffersRequest,
    OffersResponse,
    ProcureRequest,
    ProcureResponse,
    ResourceDetail,
    ResourceList,
)
from gpusupply.core.states import FINAL_STATUSES, ResourceStatus

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "GPUSUPPLY_URL"
API_KEY_ENV = "GPUSUPPLY_API_KEY"
DEFAULT_TIMEOUT = 30.0  # a resource read may re-read the vendor first (up to ~15 s)

FINAL = frozenset(str(status) for status in FINAL_STATUSES)
# A resource that is (being) deleted or has ended will not become ready.
NOT_BECOMING_READY = FINAL | {ResourceStatus.DELETING.value}

Contract = Literal["ondemand", "spot"]
UpdateHook = Callable[[ResourceDetail], None]


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the server URL must be http:// or https:// with a host, got {url!r}")
    return url


class ClientBase:
    """Configuration, and the flows and request bodies both clients build (they differ only in
    how they perform the steps: `drivers.py`)."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        *,
        retry: RetryPolicy | None,
        wait: WaitPolicy | None,
        clock: Callable[[], float],
    ) -> None:
        self.url = normalize_url(url or os.environ.get(URL_ENV) or DEFAULT_URL)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._api_key = key.strip() if key and key.strip() else None
        self.retry = retry or RetryPolicy()
        self.wait_policy = wait or WaitPolicy()
        self._clock = clock

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(url={self.url!r})"

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"gpusupply-python/{__version__}", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    # ----- flows shared by both clients ----------------------------------------------------------
    @staticmethod
    def _query(
        gpu_type: str | None,
        query: OffersRequest | None,
        gpu_count: int,
        max_price_per_gpu_hour: float | None,
        region: str | None,
        contract_type: Contract | None,
        vendor: str | None,
    ) -> OffersRequest:
        if query is not None:
            if gpu_type is not None:
                raise ValueError("give either gpu_type (and its filters) or query, not both")
            return query
        if gpu_type is None:
            raise ValueError("gpu_type is required (a family such as H100, or a canonical name)")
        return calls.offers_query(
            gpu_type,
            gpu_count=gpu_count,
            max_price_per_gpu_hour=max_price_per_gpu_hour,
            region=region,
            contract_type=contract_type,
            vendor=vendor,
        )

    @staticmethod
    def _procure_call(
        offer_id: UUID | str | None,
        spec: OffersRequest | None,
        ssh_public_key: str,
        cloud_init: str | None,
        resource_name: str | None,
        idempotency_key: str | None,
        auto_delete: AutoDeleteIn | None = None,
        wait_for_capacity: bool = False,
        cluster_name: str | None = None,
    ) -> Call[ProcureResponse]:
        if (offer_id is None) == (spec is None):
            raise ValueError("give exactly one of offer_id (procure that offer) and spec (the cheapest match)")
        body = ProcureRequest(
            offer_id=calls.as_uuid(offer_id, "offer_id") if offer_id is not None else None,
            spec=spec,
            ssh_public_key=ssh_public_key.strip(),
            cloud_init=cloud_init,
            resource_name=resource_name,
            auto_delete=auto_delete,
            wait_for_capacity=wait_for_capacity,
            cluster_name=cluster_name,
        )
        # A key per call: the retries of this call are one procurement, a new call is another.
        return calls.procure(body, idempotency_key=idempotency_key or f"sdk-{uuid.uuid4()}")

    def _resources_flow(
        self, status: str | None, vendor: str | None, offer_id: UUID | str | None, page_size: int
    ) -> Flow[None]:
        def page(limit: int, offset: int) -> Call[ResourceList]:
            return calls.list_resources(status=status, vendor=vendor, offer_id=offer_id, limit=limit, offset=offset)

        return paginate(page, lambda answer: answer.resources, self.retry, page_size=page_size, key=lambda r: r.resource_id)

    def _events_flow(self, resource_id: UUID | str, page_size: int) -> Flow[None]:
        rid = calls.as_uuid(resource_id, "resource_id")

        def page(limit: int, offset: int) -> Call[EventList]:
            return calls.list_events(rid, limit=limit, offset=offset)

        return paginate(page, lambda answer: answer.events, self.retry, page_size=page_size, key=lambda e: e.id)

    def _deliveries_flow(self, webhook_id: UUID | str, status: str | None, page_size: int) -> Flow[None]:
        wid = calls.as_uuid(webhook_id, "webhook_id")

        def page(limit: int, offset: int) -> Call[DeliveryList]:
            return calls.list_deliveries(wid, status=status, limit=limit, offset=offset)

        return paginate(page, lambda answer: answer.deliveries, self.retry, page_size=page_size, key=lambda d: d.delivery_id)

    @staticmethod
    def _budget(max_hourly_spend: float | None, monthly_budget: float | None, delete_on_exhaustion: bool) -> BudgetIn:
        return BudgetIn(
            max_hourly_spend=max_hourly_spend, monthly_budget=monthly_budget, delete_on_exhaustion=delete_on_exhaustion
        )

    @staticmethod
    def _auto_delete_patch(auto_delete: AutoDeleteIn | None) -> ResourcePatch:
        return ResourcePatch(auto_delete=auto_delete)

    def _offers_flow(self, query: OffersRequest, page_size: int) -> Flow[None]:
        def page(limit: int, offset: int) -> Call[OffersResponse]:
            return calls.get_offers(query, limit=limit, offset=offset)

        return paginate(page, lambda answer: answer.offers, self.retry, page_size=page_size, key=lambda o: o.offer_id)

    def _wait_flow(
        self,
        resource_id: UUID | str,
        targets: Collection[str],
        fail_on: Collection[str] | None,
        timeout: float | None,
        on_update: UpdateHook | None,
    ) -> Flow[ResourceDetail]:
        rid = calls.as_uuid(resource_id, "resource_id")
        targets = frozenset(str(t) for t in targets)
        wait = self.wait_policy
        if timeout is not None:
            wait = WaitPolicy(timeout=timeout, interval=min(wait.interval, max(timeout, 0.01)), max_interval=wait.max_interval)
        return wait_for_status(
            lambda: calls.get_resource(rid),
            self.retry,
            wait,
            targets=targets,
            fail_on=(FINAL - targets) if fail_on is None else frozenset(fail_on),
            clock=self._clock,
            on_update=on_update,
        )
