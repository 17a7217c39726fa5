"""fal.ai Compute adapter (Platform API v1, `https://api.fal.ai/v1/compute/instances`).

fal Compute has no offer search and returns no prices: its offers are its instance types (and,
for the 8x type, its InfiniBand sectors) priced from a configurable table. fal assigns the region
at create, and instances carry no name or label, so a create is made recoverable only through
fal's `Idempotency-Key` (responses replayed for 10 minutes): `recover` replays the create with the
same key while that window is safely open, and refuses (`RecoveryWindowPassed`) after it.

Mapping from fal JSON to core types lives in the pure module-level functions below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from gpusupply.core.errors import (
    AuthFailed,
    CapacityGone,
    InvalidRequest,
    NotFoundOnVendor,
    RateLimited,
    RecoveryWindowPassed,
    Unsupported,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.gpus import normalize_gpu
from gpusupply.core.offers import Offer
from gpusupply.core.regions import RegionGroup
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import Capabilities, CreateRequest, VendorInstance, VendorOption, VendorSpec
from gpusupply.vendors.http import RateLimits, RetryPolicy, VendorHttp, parse_json, parse_retry_after

VENDOR = "fal"
API_BASE = "/v1"  # fal's documented server is https://api.fal.ai/v1
INSTANCES = "/compute/instances"

# USD per GPU-hour. fal's public pricing lists H100 "as low as $1.89/hr"; Compute rates are not
# published per instance type (docs/vendors/fal.md). Override with GPUSUPPLY_FAL_PRICE_TABLE.
DEFAULT_PRICE_TABLE: dict[str, float] = {"gpu_1x_h100_sxm5": 1.89, "gpu_8x_h100_sxm5": 1.89}
SECTOR_TYPES: dict[str, tuple[str, ...]] = {"gpu_8x_h100_sxm5": ("sector_1", "sector_2", "sector_3")}
# A sector is fal's InfiniBand placement: nodes created in one sector share its fabric (8 x 400 Gb/s
# per node). fal shows no capacity, so a sector offer is offered as a cluster of up to this many
# nodes; a create the sector cannot take is refused ("Insufficient capacity") and the cluster is
# rolled back (docs/vendors/fal.md).
SECTOR_MAX_NODES = 4
SECTOR_INFINIBAND_GBPS = 3200.0
FAL_REGIONS = ("us-west", "us-central", "us-east", "eu-north", "eu-west", "other")
ASSIGNED_REGION = "auto"  # an offer's vendor_region: fal picks the region at create
SSH_PORT = 22  # fal reports only an IP; SSH is root@ip on the standard port

IDEMPOTENCY_WINDOW_SECONDS = 600.0
# Replay only while this much of the window is still left, so clock skew and a slow replay cannot
# land after fal has forgotten the key.
RECOVERY_SAFETY_MARGIN_SECONDS = 90.0
PAGE_LIMIT = 100  # the sandbox's maximum; fal says only "depends on query type"
MAX_PAGES = 1000

# fal documents no rate limit; we assume 10 requests/s per key over all Compute routes
# (docs/vendors/fal.md): one bucket for the key, so any route may use the whole rate while the
# others idle (a burst of creates, then a burst of polls). The sandbox enforces the same.
LIMITS = RateLimits(key=(10.0, 10.0), documented=False)

CAPABILITIES = Capabilities(
    stop_start=False, reboot=False, idempotency_key=True, marker=False, spot=False, stopped_bills_gpu=False
)

_INSTANCE_TYPE = re.compile(r"^gpu_(\d+)x_([a-z0-9_]+)$")

_STATES: dict[str, InstanceState] = {
    "init": InstanceState.PROVISIONING,
    "pending": InstanceState.PROVISIONING,
    "provisioning": InstanceState.PROVISIONING,
    "ready": InstanceState.RUNNING,
    "stopped": InstanceState.STOPPED,
    "unknown": InstanceState.UNKNOWN,
}


class MalformedInstance(ValueError):
    """A fal instance object without the fields every instance has."""


# ----- pure mapping ------------------------------------------------------------------------------


def map_state(status: str | None) -> InstanceState:
    """fal status word -> normalized state. Unknown words are UNKNOWN, never an exception."""
    return _STATES.get((status or "").strip().lower(), InstanceState.UNKNOWN)


def parse_instance_type(instance_type: str) -> tuple[int, str] | None:
    """'gpu_8x_h100_sxm5' -> (8, 'h100 sxm5'); None when the name does not follow fal's pattern."""
    match = _INSTANCE_TYPE.match(instance_type.strip().lower())
    if match is None or int(match.group(1)) < 1:
        return None
    return int(match.group(1)), match.group(2).replace("_", " ")


def region_group(fal_region: str | None) -> RegionGroup:
    """fal region -> region group: us-* is US, eu-* is EU, anything else Other."""
    region = (fal_region or "").lower()
    if region.startswith("us-"):
        return "US"
    if region.startswith("eu-"):
        return "EU"
    return "Other"


def offer_id(instance_type: str, sector: str | None) -> str:
    return f"{instance_type}:{sector}" if sector else instance_type


def parse_offer_id(vendor_offer_id: str) -> tuple[str, str | None]:
    """'gpu_8x_h100_sxm5:sector_1' -> ('gpu_8x_h100_sxm5', 'sector_1'); no colon -> no sector."""
    instance_type, _, sector = vendor_offer_id.partition(":")
    return instance_type, sector or None


def map_offer(instance_type: str, sector: str | None, price_per_gpu_hour: float, fetched_at: datetime) -> Offer:
    """One offer for an instance type (and sector). Unknown GPU names are kept, flagged."""
    parsed = parse_instance_type(instance_type)
    count, gpu_name = parsed if parsed else (1, instance_type)
    model = normalize_gpu(gpu_name)
    return Offer(
        vendor=VENDOR,
        vendor_offer_id=offer_id(instance_type, sector),
        gpu_type=model.canonical,
        gpu_family=model.family,
        gpu_count=count,
        gpu_memory_gb=float(model.memory_gb),
        gpu_price_per_hour=round(price_per_gpu_hour, 6),
        total_price_per_hour=round(price_per_gpu_hour * count, 6),
        contract_type="ondemand",
        vendor_region=ASSIGNED_REGION,
        region="Other",  # no promise of US or EU: fal chooses among FAL_REGIONS at create
        fetched_at=fetched_at,
        gpu_known=model.known,
        country=None,
        available=True,  # fal exposes no capacity query; a create may still answer "no capacity"
        vendor_data={"instance_type": instance_type, "sector": sector, "possible_regions": list(FAL_REGIONS)},
        # Only a sector places nodes together: without one fal picks any region for each.
        cluster_max_nodes=SECTOR_MAX_NODES if sector else 0,
        infiniband_bandwidth_gbps=SECTOR_INFINIBAND_GBPS if sector else 0.0,
    )


def offers_from_price_table(price_table: Mapping[str, float], fetched_at: datetime) -> list[Offer]:
    """Every offer: one per instance type, or one per sector for types that take a sector."""
    offers: list[Offer] = []
    for instance_type, price in sorted(price_table.items()):
        for sector in SECTOR_TYPES.get(instance_type, (None,)):
            offers.append(map_offer(instance_type, sector, price, fetched_at))
    return offers


def map_instance(raw: Any, price_table: Mapping[str, float] | None = None) -> VendorInstance:
    """A fal ComputeInstance object -> VendorInstance; raises MalformedInstance on a broken object."""
    if not isinstance(raw, dict):
        raise MalformedInstance(f"instance is a {type(raw).__name__}, not an object")
    instance_id, status, instance_type = raw.get("id"), raw.get("status"), raw.get("instance_type")
    if not isinstance(instance_id, str) or not instance_id:
        raise MalformedInstance("instance without an id")
    if not isinstance(status, str):
        raise MalformedInstance(f"instance {instance_id} without a status")
    if not isinstance(instance_type, str):
        raise MalformedInstance(f"instance {instance_id} without an instance_type")
    ip = raw.get("ip") if isinstance(raw.get("ip"), str) and raw.get("ip") else None
    parsed = parse_instance_type(instance_type)
    gpu_count, gpu_name = parsed if parsed else (None, instance_type)
    price = (price_table or {}).get(instance_type)
    region = raw.get("region") if isinstance(raw.get("region"), str) else None
    return VendorInstance(
        vendor_instance_id=instance_id,
        state=map_state(status),
        raw_status=status,
        marker=None,  # fal instances carry no name or label
        external_ip=ip,
        ssh_port=SSH_PORT if ip else None,
        vendor_region=region,
        gpu_name=normalize_gpu(gpu_name).canonical,
        gpu_count=gpu_count,
        price_per_hour=round(price * gpu_count, 6) if price is not None and gpu_count else None,
        extra={
            "instance_type": instance_type,
            "sector": raw.get("sector"),
            "region_group": region_group(region),
            "creator_user_nickname": raw.get("creator_user_nickname"),
        },
    )


def classify_failure(status: int, error_type: str | None, message: str, retry_after: float | None) -> VendorError:
    """fal's status + envelope type -> typed error, keeping fal's message (pure)."""
    kind = (error_type or "").lower()
    if status == 429 or kind == "rate_limited":
        return RateLimited(VENDOR, "rate limited", retry_after=retry_after, status=status, vendor_message=message)
    if status in (401, 403) or kind == "authorization_error":
        return AuthFailed(VENDOR, "authentication failed", status=status, vendor_message=message)
    if status == 404 or kind == "not_found":
        return NotFoundOnVendor(VENDOR, "not found", status=status, vendor_message=message)
    if status in (405, 501) or kind == "not_implemented":
        return Unsupported(VENDOR, "not implemented by fal", status=status, vendor_message=message)
    if status >= 500 or status in (408, 409) or kind == "server_error":
        # 408/409 on a mutation are ambiguous (crabbox treats them so): the outcome is unknown.
        return VendorUnavailable(VENDOR, f"vendor error {status}", status=status, vendor_message=message)
    if "capacity" in message.lower():
        # Inferred wording (fal documents no capacity error): the create was refused, nothing exists.
        return CapacityGone(VENDOR, "no capacity", status=status, vendor_message=message)
    return InvalidRequest(VENDOR, f"request refused ({status})", status=status, vendor_message=message)


def classify_response(vendor: str, response: httpx.Response) -> VendorError:
    """The `ErrorClassifier` VendorHttp uses for non-2xx answers."""
    error_type, message = None, ""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error_type = error.get("type") if isinstance(error.get("type"), str) else None
        message = str(error.get("message") or "")
    if not message:
        message = response.text[:300] if body is None else str(body)[:300]
    return classify_failure(response.status_code, error_type, message, parse_retry_after(response))


def parse_page(body: Any) -> tuple[list[Any], str | None]:
    """(instances, next cursor) from one list page; raises ValueError on any shape fal never sends."""
    if not isinstance(body, dict):
        raise ValueError("list page is not an object")
    instances, has_more, cursor = body.get("instances"), body.get("has_more"), body.get("next_cursor")
    if not isinstance(instances, list):
        raise ValueError("list page without an instances array")
    if not isinstance(has_more, bool):
        raise ValueError("list page without has_more")
    if cursor is not None and not isinstance(cursor, str):
        raise ValueError("next_cursor is not a string")
    if has_more and not cursor:
        raise ValueError("has_more is true but next_cursor is empty (truncated list)")
    return instances, cursor if has_more else None


def validate_price_table(table: Mapping[str, Any]) -> dict[str, float]:
    """Check a user's price table: instance type -> positive USD per GPU-hour."""
    if not isinstance(table, Mapping) or not table:
        raise ValueError("fal price_table must be a non-empty object {instance_type: USD per GPU-hour}")
    checked: dict[str, float] = {}
    for instance_type, price in table.items():
        if not isinstance(instance_type, str) or parse_instance_type(instance_type) is None:
            raise ValueError(f"fal price_table: {instance_type!r} is not a fal instance type like gpu_1x_h100_sxm5")
        if isinstance(price, bool) or not isinstance(price, int | float) or not price > 0:
            raise ValueError(f"fal price_table: price for {instance_type} must be a positive number (USD per GPU-hour)")
        checked[instance_type] = float(price)
    return checked


def _instance_path(vendor_instance_id: str) -> str:
    return f"{INSTANCES}/{quote(vendor_instance_id, safe='')}"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ----- adapter -------------------------------------------------------------------------------------


class FalAdapter:
    vendor = VENDOR
    capabilities = CAPABILITIES

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, rate_scale: float = 1.0, **vendor_options: Any
    ):
        """Options: `price_table` (instance type -> USD per GPU-hour, merged over the defaults),
        `retry` (a RetryPolicy), `clock` (returns an aware datetime; tests share the sandbox clock),
        `transport` (an httpx transport), `page_limit` (list page size, 1 to 100)."""
        price_table = vendor_options.pop("price_table", None)
        retry: RetryPolicy | None = vendor_options.pop("retry", None)
        self._clock: Callable[[], datetime] = vendor_options.pop("clock", None) or (lambda: datetime.now(UTC))
        transport: httpx.AsyncBaseTransport | None = vendor_options.pop("transport", None)
        self.page_limit = int(vendor_options.pop("page_limit", PAGE_LIMIT))
        if vendor_options:
            raise TypeError(f"FalAdapter: unknown option(s) {', '.join(sorted(vendor_options))}")
        if not 1 <= self.page_limit <= PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 1 and {PAGE_LIMIT}")
        self.price_table = {**DEFAULT_PRICE_TABLE, **(validate_price_table(price_table) if price_table else {})}
        self._http = VendorHttp(
            VENDOR,
            base_url.rstrip("/") + API_BASE,
            auth_headers={"Authorization": f"Key {api_key}"},
            limits=LIMITS,
            rate_scale=rate_scale,
            timeout=timeout,
            retry=retry,
            classifier=classify_response,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----- offers ------------------------------------------------------------------------------
    async def list_offers(self) -> list[Offer]:
        # No HTTP: the Compute API has no catalog or prices (module docstring).
        return offers_from_price_table(self.price_table, self._clock())

    # ----- instances ---------------------------------------------------------------------------
    def _instance(self, raw: Any) -> VendorInstance:
        try:
            return map_instance(raw, self.price_table)
        except MalformedInstance as exc:
            raise VendorUnavailable(VENDOR, f"malformed instance: {exc}") from None

    async def create(self, request: CreateRequest) -> VendorInstance:
        if request.offer.vendor != VENDOR:
            raise InvalidRequest(VENDOR, f"offer is from {request.offer.vendor!r}, not fal")
        if request.cloud_init:
            raise InvalidRequest(VENDOR, "fal Compute instances take no cloud-init; only an SSH key")
        instance_type, sector = parse_offer_id(request.offer.vendor_offer_id)
        if sector is not None and sector not in SECTOR_TYPES.get(instance_type, ()):
            raise InvalidRequest(VENDOR, f"{instance_type} takes no sector {sector!r}")
        body: dict[str, str] = {"instance_type": instance_type, "ssh_key": request.ssh_public_key}
        if sector is not None:
            body["sector"] = sector
        response = await self._http.request(
            "POST",
            INSTANCES,
            endpoint="create",
            safe=False,  # never retried here: the engine calls recover, which replays the key
            creates=True,
            ok=(200, 201),
            json=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        return self._instance(parse_json(VENDOR, response))

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        """Replay the create with the same Idempotency-Key: fal answers the first instance, or
        creates it if the first never committed; either way exactly one exists. Only done while
        the 10-minute replay window is safely open; after it, raise RecoveryWindowPassed."""
        if request.first_attempt_at is None:
            return None  # no create was ever sent for this request
        elapsed = (self._clock() - _utc(request.first_attempt_at)).total_seconds()
        if elapsed >= IDEMPOTENCY_WINDOW_SECONDS - RECOVERY_SAFETY_MARGIN_SECONDS:
            raise RecoveryWindowPassed(
                VENDOR,
                f"create outcome for resource {request.resource_id} cannot be recovered by idempotency key: "
                f"first attempt {elapsed:.0f}s ago, fal replays keys for {IDEMPOTENCY_WINDOW_SECONDS:.0f}s "
                "and fal instances carry no marker",
            )
        try:
            return await self.create(request)
        except CapacityGone:
            # Inside the window a committed first create would have been replayed, not refused:
            # no instance exists for this key.
            return None

    async def get(self, vendor_instance_id: str) -> VendorInstance:
        response = await self._http.request("GET", _instance_path(vendor_instance_id), endpoint="get", safe=True)
        return self._instance(parse_json(VENDOR, response))

    async def list_instances(self) -> list[VendorInstance]:
        found: dict[str, VendorInstance] = {}
        cursor: str | None = None
        seen_cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, str | int] = {"limit": self.page_limit}
            if cursor:
                params["cursor"] = cursor
            response = await self._http.request("GET", INSTANCES, endpoint="list", safe=True, params=params)
            try:
                raw_instances, cursor = parse_page(parse_json(VENDOR, response))
            except ValueError as exc:
                raise VendorUnavailable(VENDOR, f"malformed instance list: {exc}", status=response.status_code) from None
            for raw in raw_instances:
                instance = self._instance(raw)
                # Page-number cursors can repeat an item when the list shifts between pages.
                found[instance.vendor_instance_id] = instance
            if cursor is None:
                return list(found.values())
            if cursor in seen_cursors:
                raise VendorUnavailable(VENDOR, "instance list cursor repeats")
            seen_cursors.add(cursor)
        raise VendorUnavailable(VENDOR, f"instance list longer than {MAX_PAGES} pages")

    async def delete(self, vendor_instance_id: str) -> None:
        try:
            await self._http.request(
                "DELETE", _instance_path(vendor_instance_id), endpoint="delete", safe=True, ok=(200, 202, 204)
            )
        except NotFoundOnVendor:
            return  # already gone

    async def start(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "fal Compute has no start; instances run until deleted")

    async def stop(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "fal Compute has no stop; delete the instance instead")

    async def reboot(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "fal Compute has no reboot")


def price_table_option(text: str) -> dict[str, Any]:
    """GPUSUPPLY_FAL_PRICE_TABLE (JSON) -> the adapter's `price_table` option."""
    return {"price_table": json.loads(text)} if text else {}


VENDOR_SPEC = VendorSpec(
    id=VENDOR,
    name="fal.ai Compute",
    adapter=FalAdapter,
    default_url="https://api.fal.ai",
    limits=LIMITS,
    cloud_init=(),  # an SSH key only
    position=2,
    options=(
        VendorOption(
            "price_table",
            'JSON prices per fal instance type, e.g. {"gpu_8x_h100_sxm5": 2.25}, merged over the built-in table',
            price_table_option,
        ),
    ),
)
