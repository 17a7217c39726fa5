"""Nebula Block adapter: the Platform API (`https://api.nebulablock.com/api/v1`) mapped onto core types.

What makes Nebula different (docs/vendors/nebula.md has the whole story):
- A create answers no instance id. The instance carries our marker as its name (`instance_name`,
  shown back as `host_name`), so `create` finds it by listing and `recover` finds it by name.
- A create needs an OS image from the product's data center (`dc_id`) and region, and the numeric
  id of a registered SSH key: we pick the region's Ubuntu 22.04 image and register the user's key
  once (named after its fingerprint), reusing it whenever the same key comes again.
- Every answer is `{"status": "success" | "failed", "message", "data"}`; a "failed" envelope is an
  error even under HTTP 200.
- Nebula publishes no rate limits; we pace under the limits we assume (`LIMITS`).

The mapping from Nebula JSON to core types is in pure module-level functions (map_offer,
map_instance, map_state, parse_*), tested table-driven in tests/vendors/test_nebula.py.

Over 600 lines as one cohesive thing: Nebula's API as we read and drive it (its facts, the pure
mapping of its envelopes, and the adapter that uses them), which reads best in one place.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
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
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.gpus import normalize_gpu
from gpusupply.core.offers import Offer
from gpusupply.core.regions import RegionGroup, country_from_geolocation, group_for_country
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import Capabilities, CreateRequest, VendorInstance, VendorSpec
from gpusupply.vendors.base import ssh_key_identity as base_ssh_key_identity
from gpusupply.vendors.http import (
    RateLimits,
    RetryPolicy,
    VendorHttp,
    classify_status,
    parse_json,
    parse_retry_after,
    vendor_message,
)

log = logging.getLogger(__name__)

VENDOR = "nebula"
API_PATH = "/api/v1"
DEFAULT_PAGE_SIZE = 100  # the documented default `limit` of /ssh-keys
MAX_PAGES = 1000  # a list longer than this is not believed
IMAGE_CACHE_SECONDS = 600.0  # OS images change rarely
DEFAULT_SSH_PORT = 22

# Route group -> (requests per second, burst) we assume Nebula allows per key (it publishes none).
# The sandbox enforces the same.
LIMITS = RateLimits(
    routes={
        "products": (2.0, 5.0),
        "images": (2.0, 5.0),
        "create": (1.0, 3.0),
        "list": (5.0, 10.0),
        "detail": (10.0, 20.0),
        "delete": (5.0, 10.0),
        "action": (2.0, 5.0),
        "ssh_keys": (2.0, 5.0),
    },
    documented=False,
)


class MalformedBody(ValueError):
    """A body that is JSON but not in the documented shape."""


# ----- errors --------------------------------------------------------------------------------------

_CAPACITY_WORDS = ("out of stock", "insufficient", "sold out", "no capacity", "not enough")
_AUTH_WORDS = ("unauthorized", "unauthenticated", "invalid api key", "invalid token", "token expired")


def classify_failure(status: int, message: str, retry_after: float | None = None) -> VendorError:
    """A typed error from an HTTP status and Nebula's `message` (a failed envelope may come with
    HTTP 200, so the words decide when the status does not)."""
    text = message.lower()
    if status == 429 or "too many requests" in text or "rate limit" in text:
        return RateLimited(VENDOR, "rate limited", retry_after=retry_after, status=status, vendor_message=message)
    if status in (401, 403) or any(word in text for word in _AUTH_WORDS):
        return AuthFailed(VENDOR, "authentication failed", status=status, vendor_message=message)
    if status >= 500:
        return VendorUnavailable(VENDOR, f"vendor error {status}", status=status, vendor_message=message)
    if any(word in text for word in _CAPACITY_WORDS):
        return CapacityGone(VENDOR, "out of stock", status=status, vendor_message=message)
    # A 400 that says "not found" is about something in the request (an SSH key, an image), not
    # the object addressed; under HTTP 2xx only the words can tell.
    if status < 400 and "not found" in text:
        return NotFoundOnVendor(VENDOR, "not found", status=status, vendor_message=message)
    return classify_status(VENDOR, status, message, retry_after)


def classify_response(vendor: str, response: httpx.Response) -> VendorError:
    """The `ErrorClassifier` VendorHttp uses for non-2xx answers."""
    return classify_failure(response.status_code, vendor_message(response), parse_retry_after(response))


def check_envelope(status_code: int, body: Any) -> dict[str, Any]:
    """The body when it is a success envelope; raises the typed error of a failed one."""
    if not isinstance(body, dict) or body.get("status") not in ("success", "failed"):
        raise MalformedBody("not a Nebula envelope")
    if body["status"] == "failed":
        raise classify_failure(status_code, str(body.get("message") or "request failed"))
    return body


# ----- states, regions, offers ---------------------------------------------------------------------

STATE_BY_STATUS: dict[str, InstanceState] = {
    "creating": InstanceState.PROVISIONING,
    "pending": InstanceState.PROVISIONING,
    "starting": InstanceState.PROVISIONING,  # booting again after a stop
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "rebooting": InstanceState.REBOOTING,
    "deleting": InstanceState.TERMINATING,
    "deleted": InstanceState.TERMINATED,
    "error": InstanceState.ERROR,
    "failed": InstanceState.ERROR,
}


def map_state(status: str | None) -> InstanceState:
    """Nebula's status word (any case) -> InstanceState; unknown words are UNKNOWN, never an error."""
    return STATE_BY_STATUS.get((status or "").strip().lower(), InstanceState.UNKNOWN)


_REGION_PREFIX_GROUPS: dict[str, RegionGroup] = {"US": "US", "NA": "US", "EU": "EU", "APAC": "APAC", "AP": "APAC", "ASIA": "APAC"}


def region_location(region: str | None) -> tuple[str | None, RegionGroup]:
    """A Nebula region name -> (two-letter country or None, region group).

    "CANADA" and "NORWAY" are country names; "US-EAST", "EU-NORTH" and "APAC-SINGAPORE" are a
    continent prefix, optionally followed by a country or city name.
    """
    text = (region or "").strip().upper().replace("_", "-")
    if not text:
        return None, "Other"
    country = country_from_geolocation(text.replace("-", " "))
    if country is not None and len(text) > 2:
        return country, group_for_country(country)
    prefix, _, rest = text.partition("-")
    if rest:
        country = country_from_geolocation(rest.replace("-", " "))
        if country is not None:
            return country, group_for_country(country)
    if prefix == "US":
        return "US", "US"
    return None, _REGION_PREFIX_GROUPS.get(prefix, "Other")


_MEMORY_IN_NAME = re.compile(r"(\d+)\s*G(?:B)?\b", re.IGNORECASE)


def memory_hint(gpu_name: str) -> float | None:
    """GPU memory written in Nebula's name ("A100-40G-PCIe" -> 40.0), if any."""
    match = _MEMORY_IN_NAME.search(gpu_name.replace("-", " "))
    return float(match.group(1)) if match else None


def _number(value: Any) -> float | None:
    """A float from a JSON number or numeric string ("$0.68" and "28" included), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().lstrip("$"))
        except ValueError:
            return None
    return None


# A product is one GPU configuration in one region, with its stock: a co-located cluster of up to
# min(stock, this) identical instances (no InfiniBand between them).
MAX_CLUSTER_NODES = 8


def map_offer(product: Mapping[str, Any], fetched_at: datetime) -> Offer | None:
    """One Nebula product -> Offer; None when the product lacks what an offer needs (id, a GPU
    count, a price). `price_per_hour` is for the whole product, so per GPU it is divided."""
    product_id = product.get("id")
    gpu_name = product.get("gpu") or product.get("gpu_type")
    count = _number(product.get("gpu_count"))
    total = _number(product.get("price_per_hour"))
    if not product_id or not isinstance(gpu_name, str) or not count or count < 1 or total is None or total < 0:
        return None
    gpu_count = int(count)
    model = normalize_gpu(gpu_name, memory_hint(gpu_name))
    vendor_region = str(product.get("region") or "")
    country, group = region_location(vendor_region)
    stock = _number(product.get("stock"))
    available = bool(product.get("is_available", True)) and (stock is None or stock > 0)
    return Offer(
        vendor=VENDOR,
        vendor_offer_id=str(product_id),
        gpu_type=model.canonical,
        gpu_family=model.family,
        gpu_count=gpu_count,
        gpu_memory_gb=float(model.memory_gb),
        gpu_price_per_hour=round(total / gpu_count, 6),
        total_price_per_hour=total,
        contract_type="ondemand",
        vendor_region=vendor_region,
        region=group,
        fetched_at=fetched_at,
        gpu_known=model.known,
        vcpu_count=_number(product.get("cpu")),
        memory_gb=_number(product.get("ram")),
        disk_gb=_number(product.get("disk_size")),
        country=country,
        available=available,
        vendor_data={
            "dc_id": product.get("dc_id"),
            "region": vendor_region,
            "product_type": product.get("product_type"),
            "vendor_gpu": gpu_name,
            "stock": int(stock) if stock is not None else None,
            "ephemeral_gb": _number(product.get("ephemeral")),
        },
        cluster_max_nodes=min(int(stock), MAX_CLUSTER_NODES) if available and stock is not None and vendor_region else 0,
    )


def flatten_products(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`data` nested by region then GPU family -> one list of products."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise MalformedBody("products: data is not an object of regions")
    products: list[dict[str, Any]] = []
    for region, families in data.items():
        if not isinstance(families, dict):
            raise MalformedBody(f"products: region {region!r} is not an object of GPU families")
        for family, items in families.items():
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise MalformedBody(f"products: {region}/{family} is not a list of products")
            products.extend({"region": region, **item} for item in items)
    return products


def parse_images(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`data` keyed by region -> one list of images."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise MalformedBody("images: data is not an object of regions")
    images: list[dict[str, Any]] = []
    for region, items in data.items():
        if not isinstance(items, list) or not all(isinstance(item, dict) and item.get("id") for item in items):
            raise MalformedBody(f"images: {region!r} is not a list of images")
        images.extend({"region": region, **item} for item in items)
    return images


def choose_image(images: Iterable[Mapping[str, Any]], region: str, dc_id: Any) -> str | None:
    """Our default OS image for a product: an Ubuntu image of the same region and data center,
    22.04 first, and of those the one with the NVIDIA driver (CUDA) preinstalled; ties by id."""
    candidates = [
        image
        for image in images
        if image.get("region") == region
        and str(image.get("dc_id")) == str(dc_id)
        and "ubuntu" in f"{image.get('os_type', '')} {image.get('os_name', '')}".lower()
    ]
    if not candidates:
        return None

    def rank(image: Mapping[str, Any]) -> tuple[bool, bool, str]:
        name = str(image.get("os_name", "")).lower()
        return ("22.04" not in name, "cuda" not in name, str(image["id"]))

    return str(min(candidates, key=rank)["id"])


def parse_instance_page(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """(rows, total_instance) of one page of `/computing/instances` or `/deleted-instances`."""
    data, total = body.get("data"), body.get("total_instance")
    if not isinstance(data, list) or not all(isinstance(row, dict) and row.get("id") not in (None, "") for row in data):
        raise MalformedBody("instances: data is not a list of instances with ids")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise MalformedBody("instances: total_instance is missing or not a count")
    return data, total


def parse_detail(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The instance of a detail answer (`data` is a one-element list); None when it is empty."""
    data = body.get("data")
    if isinstance(data, dict):  # tolerate a plain object, should Nebula ever send one
        data = [data]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise MalformedBody("instance detail: data is not a list")
    return data[0] if data else None


def parse_ssh_keys(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """(keys, total or None) from `/ssh-keys`: `data` is `{"total_ssh_keys", "ssh_keys"}` in the
    current docs and a plain list in older ones; both are read."""
    data = body.get("data")
    total: int | None = None
    if isinstance(data, dict):
        raw_total = data.get("total_ssh_keys")
        total = raw_total if isinstance(raw_total, int) and not isinstance(raw_total, bool) else None
        data = data.get("ssh_keys")
        if total is None:
            raise MalformedBody("ssh keys: total_ssh_keys is missing")
    if not isinstance(data, list) or not all(isinstance(k, dict) and "id" in k for k in data):
        raise MalformedBody("ssh keys: not a list of keys")
    return data, total


def ssh_port_from_exposed_ports(value: Any) -> int | None:
    """The public port mapped to 22 in "<public>:<private>" pairs ("31022:22,8888:8888");
    22 when nothing is mapped (a VM listens on 22 itself); None when the field is absent."""
    if value is None:
        return None
    for pair in str(value).replace(";", ",").split(","):
        public, sep, private = pair.strip().partition(":")
        if sep and private.strip() == "22" and public.strip().isdigit():
            return int(public)
    return DEFAULT_SSH_PORT


def map_instance(row: Mapping[str, Any]) -> VendorInstance:
    """A row of the instance lists, or the detail object, -> VendorInstance."""
    status = row.get("status")
    ip = str(row.get("public_ipv4") or "").strip() or None
    # Only the detail carries the port map; list rows leave the port unknown (a container's SSH
    # port is a mapped one, so 22 would be a guess).
    ssh_port = ssh_port_from_exposed_ports(row.get("exposed_ports")) if ip else None
    count = _number(row.get("gpu_count"))
    extra = {
        key: row[key]
        for key in ("os", "cpu_cores", "ram", "disk_size", "ephemeral", "start_time", "running_time", "total_cost", "user_name", "lan_ipv4")
        if row.get(key) not in (None, "")
    }
    if "user_name" in extra:
        extra["ssh_user"] = extra.pop("user_name")
    return VendorInstance(
        vendor_instance_id=str(row["id"]),
        state=map_state(status if isinstance(status, str) else None),
        raw_status=status if isinstance(status, str) else None,
        marker=str(row["host_name"]) if row.get("host_name") else None,
        external_ip=ip,
        ssh_port=ssh_port,
        vendor_region=str(row["region"]) if row.get("region") else None,
        gpu_name=row.get("gpu") or row.get("gpu_type"),
        gpu_count=int(count) if count is not None else None,
        price_per_hour=_number(row.get("price_per_hour")),
        extra=extra,
    )


def ssh_key_identity(public_key: str) -> tuple[str, str]:
    """`vendors.base.ssh_key_identity` for this vendor's errors."""
    return base_ssh_key_identity(VENDOR, public_key)


# ----- the adapter ---------------------------------------------------------------------------------


class NebulaAdapter:
    vendor = VENDOR
    capabilities = Capabilities(
        stop_start=True,
        reboot=True,
        idempotency_key=False,
        marker=True,
        spot=False,
        # Not documented by Nebula; we assume a stopped instance keeps (and bills) its GPUs.
        stopped_bills_gpu=True,
    )

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0, rate_scale: float = 1.0, **vendor_options: Any):
        """`vendor_options`: `page_size` (list pages, default 100), `retry` (a RetryPolicy) and
        `image_cache_seconds` (default 600)."""
        page_size = int(vendor_options.pop("page_size", DEFAULT_PAGE_SIZE))
        retry = vendor_options.pop("retry", None)
        self._image_cache_seconds = float(vendor_options.pop("image_cache_seconds", IMAGE_CACHE_SECONDS))
        if vendor_options:
            raise TypeError(f"unknown Nebula adapter options: {', '.join(sorted(vendor_options))}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        root = base_url.rstrip("/")
        if not root.endswith(API_PATH):
            root += API_PATH
        self.page_size = page_size
        headers = {"Content-Type": "application/json"}
        if api_key.strip():  # an empty key goes without the header, so Nebula answers 401, not httpx
            headers["Authorization"] = f"Bearer {api_key.strip()}"
        self._http = VendorHttp(
            VENDOR,
            root,
            auth_headers=headers,
            limits=LIMITS,
            rate_scale=rate_scale,
            timeout=timeout,
            retry=retry,
            classifier=classify_response,
        )
        self._ssh_key_ids: dict[str, int] = {}  # comparable public key -> Nebula key id
        self._ssh_lock = asyncio.Lock()
        self._images: list[dict[str, Any]] = []
        self._images_at: float | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, endpoint: str, safe: bool, **kwargs: Any) -> dict[str, Any]:
        """One call under the shared policy; returns the success envelope or raises a typed error."""
        response = await self._http.request(method, path, endpoint=endpoint, safe=safe, **kwargs)
        try:
            return check_envelope(response.status_code, parse_json(VENDOR, response))
        except MalformedBody as exc:
            raise VendorUnavailable(VENDOR, f"{endpoint}: malformed answer ({exc})", status=response.status_code) from None

    # ----- offers ------------------------------------------------------------------------------
    async def list_offers(self) -> list[Offer]:
        body = await self._call("GET", "computing/products", endpoint="products", safe=True)
        fetched_at = datetime.now(UTC)
        try:
            products = flatten_products(body)
        except MalformedBody as exc:
            raise VendorUnavailable(VENDOR, f"products: malformed answer ({exc})") from None
        offers: dict[str, Offer] = {}
        for product in products:
            offer = map_offer(product, fetched_at)
            if offer is None:
                log.warning("nebula product skipped: incomplete", extra={"vendor": VENDOR, "product_id": product.get("id")})
                continue
            offers.setdefault(offer.vendor_offer_id, offer)
        return list(offers.values())

    # ----- create and recover ------------------------------------------------------------------
    async def create(self, request: CreateRequest) -> VendorInstance | None:
        if request.cloud_init:
            # Dropping the user's cloud-init silently would be worse than refusing the offer.
            raise InvalidRequest(VENDOR, "Nebula instances take no cloud-init / user-data; cloud_init cannot be applied")
        offer = request.offer
        region = str(offer.vendor_data.get("region") or offer.vendor_region)
        dc_id = offer.vendor_data.get("dc_id")
        if dc_id is None:
            region, dc_id = await self._product_location(offer.vendor_offer_id)
        image_id = await self._image_for(region, dc_id)
        body: dict[str, Any] = {"instance_name": request.marker, "product_id": offer.vendor_offer_id, "image_id": image_id}
        for attempt in range(2):
            body["ssh_key_id"] = await self._ssh_key_id(request.ssh_public_key)
            try:
                await self._call("POST", "computing/instance", endpoint="create", safe=False, creates=True, json=body)
                break
            except (NotFoundOnVendor, InvalidRequest) as exc:
                # A refused create committed nothing: if our cached key was deleted on Nebula,
                # register it again and repeat once.
                if attempt == 0 and "ssh key" in exc.vendor_message.lower():
                    self._ssh_key_ids.clear()
                    continue
                if isinstance(exc, NotFoundOnVendor):  # the product is gone from the catalog
                    raise CapacityGone(VENDOR, "product no longer offered", status=exc.status, vendor_message=exc.vendor_message) from None
                raise
        # The answer carries no id: look the instance up by its name. The create did happen, so a
        # failed lookup is no error here; the engine's recover finds it later.
        try:
            return await self._find_by_marker(request, include_deleted=False)
        except VendorError as exc:
            log.info("nebula create accepted; lookup deferred", extra={"vendor": VENDOR, "error": type(exc).__name__})
            return None

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        return await self._find_by_marker(request, include_deleted=True)

    async def _find_by_marker(self, request: CreateRequest, *, include_deleted: bool) -> VendorInstance | None:
        paths = ("computing/instances", "computing/deleted-instances") if include_deleted else ("computing/instances",)
        for path in paths:
            matches = [row for row in await self._list_all(path) if request.is_ours(row.get("host_name"))]
            if len(matches) > 1:
                log.warning("nebula: several instances carry one marker", extra={"vendor": VENDOR, "marker": request.marker, "count": len(matches)})
            if matches:  # the oldest, when a late create made two: the reconciler deletes the others
                return map_instance(min(matches, key=lambda row: (len(str(row.get("id"))), str(row.get("id")))))
        return None

    async def _product_location(self, product_id: str) -> tuple[str, Any]:
        body = await self._call("GET", "computing/products", endpoint="products", safe=True)
        try:
            products = flatten_products(body)
        except MalformedBody as exc:
            raise VendorUnavailable(VENDOR, f"products: malformed answer ({exc})") from None
        for product in products:
            if str(product.get("id")) == product_id:
                return str(product.get("region")), product.get("dc_id")
        raise CapacityGone(VENDOR, "product no longer offered")

    async def _image_for(self, region: str, dc_id: Any) -> str:
        fresh = self._images_at is not None and time.monotonic() - self._images_at < self._image_cache_seconds
        image_id = choose_image(self._images, region, dc_id) if fresh else None
        if image_id is None:
            body = await self._call("GET", "computing/images", endpoint="images", safe=True)
            try:
                self._images = parse_images(body)
            except MalformedBody as exc:
                raise VendorUnavailable(VENDOR, f"images: malformed answer ({exc})") from None
            self._images_at = time.monotonic()
            image_id = choose_image(self._images, region, dc_id)
        if image_id is None:
            raise CapacityGone(VENDOR, f"no Ubuntu image in region {region} data center {dc_id}")
        return image_id

    async def _ssh_key_id(self, public_key: str) -> int:
        """The Nebula id of the user's key: cached, else found by its key data, else registered."""
        comparable, key_name = ssh_key_identity(public_key)
        async with self._ssh_lock:
            key_id = self._ssh_key_ids.get(comparable)
            if key_id is None:
                key_id = await self._find_ssh_key(comparable)
            if key_id is None:
                body = await self._call(
                    "POST", "ssh-keys", endpoint="ssh_keys", safe=False, json={"key_name": key_name, "key_data": public_key.strip()}
                )
                data = body.get("data")
                raw_id = data.get("id") if isinstance(data, dict) else None
                key_id = int(raw_id) if isinstance(raw_id, int | str) and str(raw_id).isdigit() else await self._find_ssh_key(comparable)
                if key_id is None:
                    raise VendorUnavailable(VENDOR, "ssh key registered but not found afterwards")
            self._ssh_key_ids[comparable] = key_id
            return key_id

    async def _find_ssh_key(self, comparable: str) -> int | None:
        offset = 0
        for _ in range(MAX_PAGES):
            body = await self._call(
                "GET", "ssh-keys", endpoint="ssh_keys", safe=True, params={"limit": self.page_size, "offset": offset}
            )
            try:
                keys, total = parse_ssh_keys(body)
            except MalformedBody as exc:
                raise VendorUnavailable(VENDOR, f"ssh keys: malformed answer ({exc})") from None
            for key in keys:
                data = str(key.get("key_data") or "").split()
                if len(data) >= 2 and f"{data[0]} {data[1]}" == comparable and str(key["id"]).isdigit():
                    return int(key["id"])
            offset += len(keys)
            if total is not None and offset >= total:
                return None
            if total is not None and len(keys) < min(self.page_size, total - (offset - len(keys))):
                raise VendorUnavailable(VENDOR, "ssh keys: page shorter than its count")
            if total is None and len(keys) < self.page_size:
                return None
        raise VendorUnavailable(VENDOR, "ssh keys: too many pages")

    # ----- reading instances -------------------------------------------------------------------
    async def get(self, vendor_instance_id: str) -> VendorInstance:
        body = await self._call("GET", f"computing/instance/{quote(vendor_instance_id, safe='')}", endpoint="detail", safe=True)
        try:
            row = parse_detail(body)
        except MalformedBody as exc:
            raise VendorUnavailable(VENDOR, f"instance detail: malformed answer ({exc})") from None
        if row is None:
            raise NotFoundOnVendor(VENDOR, "instance not found")
        if row.get("id") in (None, ""):
            row = {**row, "id": vendor_instance_id}
        return map_instance(row)

    async def list_instances(self) -> list[VendorInstance]:
        return [map_instance(row) for row in await self._list_all("computing/instances")]

    async def _list_all(self, path: str) -> list[dict[str, Any]]:
        """Every row of an instance list, over all pages. Offset paging can skip or repeat a row
        when instances come or go between pages, so a pass whose count changed is done again."""
        for _ in range(3):
            rows, first_total, last_total = await self._list_pass(path)
            if first_total == last_total:
                return rows
        raise VendorUnavailable(VENDOR, f"{path}: the list kept changing while it was paged")

    async def _list_pass(self, path: str) -> tuple[list[dict[str, Any]], int, int]:
        rows: dict[str, dict[str, Any]] = {}
        offset = 0
        first_total: int | None = None
        for _ in range(MAX_PAGES):
            body = await self._call("GET", path, endpoint="list", safe=True, params={"limit": self.page_size, "offset": offset})
            try:
                page, total = parse_instance_page(body)
            except MalformedBody as exc:
                raise VendorUnavailable(VENDOR, f"{path}: malformed answer ({exc})") from None
            if first_total is None:
                first_total = total
            if len(page) < min(self.page_size, total - offset):
                raise VendorUnavailable(VENDOR, f"{path}: truncated page ({len(page)} rows at offset {offset} of {total})")
            for row in page:
                rows.setdefault(str(row["id"]), row)
            offset += len(page)
            if offset >= total:
                return list(rows.values()), first_total, total
        raise VendorUnavailable(VENDOR, f"{path}: too many pages")

    # ----- changing instances ------------------------------------------------------------------
    async def delete(self, vendor_instance_id: str) -> None:
        try:
            await self._call("DELETE", f"computing/instance/{quote(vendor_instance_id, safe='')}", endpoint="delete", safe=True)
        except NotFoundOnVendor:
            return
        except InvalidRequest:
            # Some refusals of a repeated delete are not 404s: gone is gone if it is in the deleted list.
            if any(str(row["id"]) == vendor_instance_id for row in await self._list_all("computing/deleted-instances")):
                return
            raise

    async def start(self, vendor_instance_id: str) -> None:
        await self._action(vendor_instance_id, "start", {InstanceState.PROVISIONING, InstanceState.RUNNING})

    async def stop(self, vendor_instance_id: str) -> None:
        await self._action(vendor_instance_id, "stop", {InstanceState.STOPPING, InstanceState.STOPPED})

    async def reboot(self, vendor_instance_id: str) -> None:
        await self._action(vendor_instance_id, "reboot", {InstanceState.REBOOTING})

    async def _action(self, vendor_instance_id: str, action: str, done_states: set[InstanceState]) -> None:
        """Start/stop/reboot (GETs on Nebula). Nebula refuses an action the instance's state does not
        allow; when the refused action is already done (a retry after a lost answer), that is success."""
        path = f"computing/instance/{quote(vendor_instance_id, safe='')}/{action}"
        try:
            await self._call("GET", path, endpoint="action", safe=True)
        except InvalidRequest:
            if (await self.get(vendor_instance_id)).state in done_states:
                return
            raise


VENDOR_SPEC = VendorSpec(
    id=VENDOR,
    name="Nebula Block",
    adapter=NebulaAdapter,
    default_url="https://api.nebulablock.com",
    limits=LIMITS,
    cloud_init=(),  # no user data
    position=3,
)
