"""`GpuSupply` (blocking) and `AsyncGpuSupply` (asyncio): the same methods, the same logic.

Requests are built in `calls.py` and retries, paging and waiting are flows in `flows.py`; the two
classes below only perform the steps, with httpx's blocking or async client. Each public method
is one line: adding a route to the SDK is a builder in `calls.py` and a line in each class.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import httpx

from gpusupply import __version__
from gpusupply.api.schemas import (
    ActionResponse,
    DeleteResourceResponse,
    EventList,
    EventOut,
    Health,
    OfferDetails,
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
    VendorInfo,
)
from gpusupply.api.schemas_cost import (
    AutoDeleteIn,
    BudgetIn,
    BudgetOut,
    DeliveryList,
    DeliveryOut,
    ResourcePatch,
    UsageReportOut,
    WebhookCreated,
    WebhookDeleted,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from gpusupply.client import calls
from gpusupply.client.calls import When
from gpusupply.client.flows import (
    Call,
    Emit,
    Flow,
    Outcome,
    Request,
    RetryPolicy,
    Sleep,
    Step,
    WaitPolicy,
    paginate,
    send,
    wait_for_status,
)
from gpusupply.core.states import FINAL_STATUSES, ResourceStatus

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "GPUSUPPLY_URL"
API_KEY_ENV = "GPUSUPPLY_API_KEY"
DEFAULT_TIMEOUT = 30.0  # a resource read may re-read the vendor first (up to ~15 s)

FINAL = frozenset(str(status) for status in FINAL_STATUSES)
# A resource that is (being) deleted or has ended will not become ready.
NOT_BECOMING_READY = FINAL | {ResourceStatus.DELETING.value}

Contract = Literal["ondemand", "spot"]
Vendor = Literal["vast", "fal", "nebula", "lambda", "runpod"]
UpdateHook = Callable[[ResourceDetail], None]


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the server URL must be http:// or https:// with a host, got {url!r}")
    return url


class _ClientBase:
    """Configuration and the flows both clients run."""

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
        vendor: Vendor | None,
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


def _unexpected(step: Step) -> TypeError:
    return TypeError(f"unexpected step {step!r}")


class GpuSupply(_ClientBase):
    """Blocking client. `with GpuSupply(url, api_key) as gs: gs.get_offers("H100")`.

    `url` and `api_key` default to $GPUSUPPLY_URL (else http://127.0.0.1:8080) and
    $GPUSUPPLY_API_KEY. `retry` bounds retries on 429/503/connection failures; `wait` sets how
    the wait helpers poll; `transport` replaces httpx's (tests, proxies).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        wait: WaitPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, api_key, retry=retry, wait=wait, clock=clock)
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GpuSupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- driving flows -------------------------------------------------------------------------
    def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            self._sleep(step.seconds)
            return Outcome()
        if isinstance(step, Request):
            try:
                return Outcome(
                    self._http.request(step.method, step.path, params=step.params, json=step.json, headers=step.headers)
                )
            except httpx.TransportError as exc:
                return Outcome(error=exc)
        raise _unexpected(step)

    def _run(self, flow: Flow[T]) -> T:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration as stop:
                return stop.value
            outcome = self._perform(step)

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.item
                outcome = Outcome()
            else:
                outcome = self._perform(step)

    def _call(self, call: Call[T]) -> T:
        return self._run(send(call, self.retry))

    # ----- discovery -----------------------------------------------------------------------------
    def available_gpus(self) -> dict[str, list[str]]:
        """GPU families and their canonical names: {"H100": ["nvidia-h100-sxm5-80gb", ...], ...}."""
        return self._call(calls.available_gpus())

    def available_vendors(self) -> list[VendorInfo]:
        return self._call(calls.available_vendors())

    def available_regions(self) -> list[str]:
        return self._call(calls.available_regions())

    def available_contracts(self) -> list[str]:
        return self._call(calls.available_contracts())

    # ----- offers --------------------------------------------------------------------------------
    def get_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: Vendor | None = None,
        query: OffersRequest | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> OffersResponse:
        """One page of offers, cheapest per GPU-hour first (give `gpu_type` and filters, or `query`)."""
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
        vendor: Vendor | None = None,
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
    ) -> ProcureResponse:
        """Procure an offer, or (with `spec`) the cheapest offer matching a get_offers document.

        Answers at once; the resource provisions in the background (see `wait_ready`). Sent with
        an Idempotency-Key (yours, or a new one per call), so the SDK's retries never procure twice.
        `auto_delete` (e.g. `AutoDeleteIn(ttl_seconds=3600, spend_limit=20)`) deletes it at a time or
        spend. A procurement the budget does not allow raises BudgetExceededError (402); a spec no
        offer matches now raises ConflictError (409) unless `wait_for_capacity`.
        """
        call = self._procure_call(
            offer_id, spec, ssh_public_key, cloud_init, resource_name, idempotency_key, auto_delete, wait_for_capacity
        )
        return self._call(call)

    # ----- resources -----------------------------------------------------------------------------
    def list_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ResourceList:
        """One page of your resources, newest first."""
        return self._call(calls.list_resources(status=status, vendor=vendor, offer_id=offer_id, limit=limit, offset=offset))

    def iter_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        page_size: int = 100,
    ) -> Iterator[ResourceSummary]:
        """All your resources (matching the filters), page after page, newest first."""
        return self._iterate(self._resources_flow(status, vendor, offer_id, page_size))

    def get_resource(self, resource_id: UUID | str, *, force_refresh: bool = False) -> ResourceDetail:
        return self._call(calls.get_resource(resource_id, force_refresh=force_refresh))

    def delete_resource(self, resource_id: UUID | str, *, force: bool = False) -> DeleteResourceResponse:
        """Start deleting (the answer says `deleting`); `wait_deleted` waits for the vendor's confirmation."""
        return self._call(calls.delete_resource(resource_id, force=force))

    def stop_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "stop"))

    def start_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "start"))

    def reboot_resource(self, resource_id: UUID | str) -> ActionResponse:
        return self._call(calls.resource_action(resource_id, "reboot"))

    def list_events(self, resource_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return self._call(calls.list_events(resource_id, limit=limit, offset=offset))

    def iter_events(self, resource_id: UUID | str, *, page_size: int = 500) -> Iterator[EventOut]:
        """The resource's whole history, oldest first."""
        return self._iterate(self._events_flow(resource_id, page_size))

    def set_auto_delete(self, resource_id: UUID | str, auto_delete: AutoDeleteIn | None) -> ResourceDetail:
        """Set (merged with the current ones) or, with None, remove the resource's auto-delete limits.
        Only the fields set on `auto_delete` change; a field set to None removes that limit."""
        return self._call(calls.update_resource(resource_id, self._auto_delete_patch(auto_delete)))

    # ----- cost ----------------------------------------------------------------------------------
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

    # ----- webhooks ------------------------------------------------------------------------------
    def create_webhook(self, url: str, *, events: list[str] | None = None, description: str | None = None) -> WebhookCreated:
        """Register a URL for your events; the answer's `secret` (shown once) verifies signatures."""
        return self._call(calls.create_webhook(WebhookIn(url=url, events=events, description=description)))

    def list_webhooks(self) -> WebhookList:
        return self._call(calls.list_webhooks())

    def get_webhook(self, webhook_id: UUID | str) -> WebhookOut:
        return self._call(calls.get_webhook(webhook_id))

    def delete_webhook(self, webhook_id: UUID | str) -> WebhookDeleted:
        return self._call(calls.delete_webhook(webhook_id))

    def list_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> DeliveryList:
        return self._call(calls.list_deliveries(webhook_id, status=status, limit=limit, offset=offset))

    def iter_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, page_size: int = 100
    ) -> Iterator[DeliveryOut]:
        """Every delivery of the webhook, newest first."""
        return self._iterate(self._deliveries_flow(webhook_id, status, page_size))

    # ----- waiting -------------------------------------------------------------------------------
    def wait_for_status(
        self,
        resource_id: UUID | str,
        statuses: Collection[str],
        *,
        fail_on: Collection[str] | None = None,
        timeout: float | None = None,
        on_update: UpdateHook | None = None,
    ) -> ResourceDetail:
        """Poll until the status is one of `statuses`. Raises ResourceFailedError on a status in
        `fail_on` (default: the final statuses not wanted), WaitTimeoutError after `timeout` s."""
        return self._run(self._wait_flow(resource_id, statuses, fail_on, timeout, on_update))

    def wait_ready(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None
    ) -> ResourceDetail:
        """Until `running` (with its SSH command); ResourceFailedError if it fails, ends or is deleted."""
        return self.wait_for_status(
            resource_id, {ResourceStatus.RUNNING}, fail_on=NOT_BECOMING_READY, timeout=timeout, on_update=on_update
        )

    def wait_deleted(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None
    ) -> ResourceDetail:
        """Until the resource has ended (`deleted`, or `failed`/`terminated`: nothing is left on the vendor)."""
        return self.wait_for_status(resource_id, FINAL, fail_on=(), timeout=timeout, on_update=on_update)

    # ----- health --------------------------------------------------------------------------------
    def health(self) -> Health:
        return self._call(calls.health())

    def readiness(self) -> Readiness:
        return self._call(calls.readiness())


class AsyncGpuSupply(_ClientBase):
    """asyncio client with the same methods as `GpuSupply` (awaited; iterators are async).

    `async with AsyncGpuSupply(url, api_key) as gs: offers = await gs.get_offers("H100")`.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        wait: WaitPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(url, api_key, retry=retry, wait=wait, clock=clock)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGpuSupply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- driving flows -------------------------------------------------------------------------
    async def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            await self._sleep(step.seconds)
            return Outcome()
        if isinstance(step, Request):
            try:
                return Outcome(
                    await self._http.request(step.method, step.path, params=step.params, json=step.json, headers=step.headers)
                )
            except httpx.TransportError as exc:
                return Outcome(error=exc)
        raise _unexpected(step)

    async def _run(self, flow: Flow[T]) -> T:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration as stop:
                return stop.value
            outcome = await self._perform(step)

    async def _iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.item
                outcome = Outcome()
            else:
                outcome = await self._perform(step)

    async def _call(self, call: Call[T]) -> T:
        return await self._run(send(call, self.retry))

    # ----- discovery -----------------------------------------------------------------------------
    async def available_gpus(self) -> dict[str, list[str]]:
        return await self._call(calls.available_gpus())

    async def available_vendors(self) -> list[VendorInfo]:
        return await self._call(calls.available_vendors())

    async def available_regions(self) -> list[str]:
        return await self._call(calls.available_regions())

    async def available_contracts(self) -> list[str]:
        return await self._call(calls.available_contracts())

    # ----- offers --------------------------------------------------------------------------------
    async def get_offers(
        self,
        gpu_type: str | None = None,
        *,
        gpu_count: int = 1,
        max_price_per_gpu_hour: float | None = None,
        region: str | None = None,
        contract_type: Contract | None = None,
        vendor: Vendor | None = None,
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
        vendor: Vendor | None = None,
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
    ) -> ProcureResponse:
        call = self._procure_call(
            offer_id, spec, ssh_public_key, cloud_init, resource_name, idempotency_key, auto_delete, wait_for_capacity
        )
        return await self._call(call)

    # ----- resources -----------------------------------------------------------------------------
    async def list_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ResourceList:
        return await self._call(
            calls.list_resources(status=status, vendor=vendor, offer_id=offer_id, limit=limit, offset=offset)
        )

    def iter_resources(
        self,
        *,
        status: str | None = None,
        vendor: str | None = None,
        offer_id: UUID | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ResourceSummary]:
        return self._iterate(self._resources_flow(status, vendor, offer_id, page_size))

    async def get_resource(self, resource_id: UUID | str, *, force_refresh: bool = False) -> ResourceDetail:
        return await self._call(calls.get_resource(resource_id, force_refresh=force_refresh))

    async def delete_resource(self, resource_id: UUID | str, *, force: bool = False) -> DeleteResourceResponse:
        return await self._call(calls.delete_resource(resource_id, force=force))

    async def stop_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "stop"))

    async def start_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "start"))

    async def reboot_resource(self, resource_id: UUID | str) -> ActionResponse:
        return await self._call(calls.resource_action(resource_id, "reboot"))

    async def list_events(self, resource_id: UUID | str, *, limit: int = 500, offset: int = 0) -> EventList:
        return await self._call(calls.list_events(resource_id, limit=limit, offset=offset))

    def iter_events(self, resource_id: UUID | str, *, page_size: int = 500) -> AsyncIterator[EventOut]:
        return self._iterate(self._events_flow(resource_id, page_size))

    async def set_auto_delete(self, resource_id: UUID | str, auto_delete: AutoDeleteIn | None) -> ResourceDetail:
        return await self._call(calls.update_resource(resource_id, self._auto_delete_patch(auto_delete)))

    # ----- cost ----------------------------------------------------------------------------------
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

    # ----- webhooks ------------------------------------------------------------------------------
    async def create_webhook(
        self, url: str, *, events: list[str] | None = None, description: str | None = None
    ) -> WebhookCreated:
        return await self._call(calls.create_webhook(WebhookIn(url=url, events=events, description=description)))

    async def list_webhooks(self) -> WebhookList:
        return await self._call(calls.list_webhooks())

    async def get_webhook(self, webhook_id: UUID | str) -> WebhookOut:
        return await self._call(calls.get_webhook(webhook_id))

    async def delete_webhook(self, webhook_id: UUID | str) -> WebhookDeleted:
        return await self._call(calls.delete_webhook(webhook_id))

    async def list_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> DeliveryList:
        return await self._call(calls.list_deliveries(webhook_id, status=status, limit=limit, offset=offset))

    def iter_deliveries(
        self, webhook_id: UUID | str, *, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[DeliveryOut]:
        return self._iterate(self._deliveries_flow(webhook_id, status, page_size))

    # ----- waiting -------------------------------------------------------------------------------
    async def wait_for_status(
        self,
        resource_id: UUID | str,
        statuses: Collection[str],
        *,
        fail_on: Collection[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a poll deadline: WaitTimeoutError with the last state)
        on_update: UpdateHook | None = None,
    ) -> ResourceDetail:
        return await self._run(self._wait_flow(resource_id, statuses, fail_on, timeout, on_update))

    async def wait_ready(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None  # noqa: ASYNC109
    ) -> ResourceDetail:
        return await self.wait_for_status(
            resource_id, {ResourceStatus.RUNNING}, fail_on=NOT_BECOMING_READY, timeout=timeout, on_update=on_update
        )

    async def wait_deleted(
        self, resource_id: UUID | str, *, timeout: float | None = None, on_update: UpdateHook | None = None  # noqa: ASYNC109
    ) -> ResourceDetail:
        return await self.wait_for_status(resource_id, FINAL, fail_on=(), timeout=timeout, on_update=on_update)

    # ----- health --------------------------------------------------------------------------------
    async def health(self) -> Health:
        return await self._call(calls.health())

    async def readiness(self) -> Readiness:
        return await self._call(calls.readiness())
