"""Lambda Cloud adapter: the Cloud API v1 (`https://cloud.lambda.ai/api/v1`, OpenAPI 1.8.3) mapped
onto core types. The module is `lambdalabs` because `lambda` is a Python keyword; the vendor id
is `lambda` everywhere else.

What makes Lambda different (docs/vendors/lambda.md has the whole story):
- Offers are instance types (`gpu_1x_h100_sxm5`) x the regions that have capacity now
  (`regions_with_capacity_available`); a type with no such region is not offered.
  `price_cents_per_hour` is for the whole instance.
- A launch takes exactly one SSH key, by name: the user's key is registered once under a name
  derived from its fingerprint and found again by its key data. Our marker goes in `name`, so a
  launch whose answer was lost is found by listing `GET /instances`.
- Restart only: no stop/start. Terminated instances leave the listing.
- Errors are `{"error": {"code", "message", "suggestion"?}}` and are classified by `code` (Lambda
  asks clients not to rely on the message). `provider/...` codes are upstream and retryable.
- Rate limits (OpenAPI `info.description`): about 1 request/s for the key, launch 1 per 12 s.

The mapping from Lambda JSON to core types is in pure module-level functions (map_offer,
map_instance, map_state, classify_failure, parse_*), tested table-driven in
tests/vendors/test_lambdalabs.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
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
    Unsupported,
    VendorError,
    VendorUnavailable,
)
from gpusupply.core.gpus import normalize_gpu
from gpusupply.core.offers import Offer
from gpusupply.core.regions import RegionGroup, country_from_geolocation, group_for_country
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import (
    CLOUD_CONFIG,
    SCRIPT,
    Capabilities,
    CreateRequest,
    VendorInstance,
    VendorSpec,
)
from gpusupply.vendors.base import ssh_key_identity as base_ssh_key_identity
from gpusupply.vendors.http import (
    RateLimits,
    RetryPolicy,
    VendorHttp,
    as_dict,
    classify_status,
    parse_json,
    parse_retry_after,
)

log = logging.getLogger(__name__)

VENDOR = "lambda"
API_PATH = "/api/v1"
SSH_PORT = 22  # Lambda instances are VMs with a public IP; sshd listens on 22
SSH_USER = "ubuntu"  # Lambda Stack images log in as ubuntu
MAX_NAME = 64  # InstanceLaunchRequest.name maxLength
# Lambda launches several instances of one type in one region (co-located, no InfiniBand). Its API
# shows only whether a region has capacity, not how much: a region is offered for clusters of up to
# this many nodes, and a launch it cannot take is refused and the cluster rolled back.
MAX_CLUSTER_NODES = 4

# Documented limits (OpenAPI info.description): "generally limited to one request per second"
# for the key; launch "one request per 12 seconds, or five requests per minute". The sandbox
# enforces the same.
LIMITS = RateLimits(routes={"launch": (1.0 / 12.0, 2.0)}, key=(1.0, 2.0))


class MalformedBody(ValueError):
    """A body that is JSON but not in the documented shape."""


# ----- errors --------------------------------------------------------------------------------------

CAPACITY_CODES = frozenset({"instance-operations/launch/insufficient-capacity", "global/quota-exceeded"})
AUTH_CODES = frozenset({"global/invalid-api-key", "global/account-inactive", "global/invalid-address"})


def error_fields(body: Any) -> tuple[str | None, str]:
    """(code, message) of Lambda's error envelope; (None, a short excerpt) for any other body."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or code or "request failed")
        suggestion = error.get("suggestion")
        if isinstance(suggestion, str) and suggestion:
            message = f"{message} ({suggestion})"
        return code, message
    return None, (json.dumps(body)[:300] if not isinstance(body, str) else body[:300])


def classify_failure(status: int, code: str | None, message: str, retry_after: float | None = None) -> VendorError:
    """A typed error from the HTTP status and Lambda's error `code` (the code decides; the status
    only where the code is absent or unknown)."""
    kw: dict[str, Any] = {"status": status, "vendor_message": message}
    if status == 429:
        return RateLimited(VENDOR, "rate limited", retry_after=retry_after, **kw)
    if code is not None and code.startswith("provider/"):
        return VendorUnavailable(VENDOR, f"upstream provider error ({code})", **kw)
    if code == "global/internal-error":
        return VendorUnavailable(VENDOR, f"vendor error {status}", **kw)
    if code in AUTH_CODES:
        return AuthFailed(VENDOR, f"authentication failed ({code})", **kw)
    if code == "global/object-does-not-exist":
        return NotFoundOnVendor(VENDOR, "not found", **kw)
    if code == "instance-operations/launch/insufficient-capacity":
        return CapacityGone(VENDOR, "no capacity for this instance type in this region", **kw)
    if code == "global/quota-exceeded":
        # Nothing this account can launch on Lambda now: another vendor may still serve the request.
        return CapacityGone(VENDOR, "quota exceeded", **kw)
    if code is not None and code.startswith(("global/", "instance-operations/", "ssh-keys/")):
        return InvalidRequest(VENDOR, f"request refused ({code})", **kw)
    return classify_status(VENDOR, status, message, retry_after)


def classify_response(vendor: str, response: httpx.Response) -> VendorError:
    """The `ErrorClassifier` VendorHttp uses for non-2xx answers."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text
    code, message = error_fields(body)
    return classify_failure(response.status_code, code, message, parse_retry_after(response))


# ----- states, regions, offers ---------------------------------------------------------------------

STATE_BY_STATUS: dict[str, InstanceState] = {
    "booting": InstanceState.PROVISIONING,  # after a launch, and again during a restart
    "active": InstanceState.RUNNING,
    "unhealthy": InstanceState.ERROR,  # exists and bills, but does not answer Lambda's health checks
    "terminating": InstanceState.TERMINATING,
    "terminated": InstanceState.TERMINATED,
    "preempted": InstanceState.TERMINATED,  # taken back by Lambda: gone for us, no longer billed
}


def map_state(status: str | None) -> InstanceState:
    """Lambda's status word -> InstanceState; unknown words are UNKNOWN, never an error."""
    return STATE_BY_STATUS.get((status or "").strip().lower(), InstanceState.UNKNOWN)


# PublicRegionCode -> country. Codes name a place loosely ("me-west-1"); the table is ours and the
# region's `description` ("California, USA") is the fallback for codes Lambda adds later.
REGION_COUNTRIES: dict[str, str] = {
    "europe-central-1": "DE",
    "asia-south-1": "IN",
    "australia-east-1": "AU",
    "me-west-1": "IL",
    "asia-northeast-1": "JP",
    "asia-northeast-2": "KR",
}


def region_location(name: str | None, description: str | None = None) -> tuple[str | None, RegionGroup]:
    """A Lambda region -> (two-letter country or None, region group)."""
    code = (name or "").strip().lower()
    country = "US" if code.startswith("us-") else REGION_COUNTRIES.get(code)
    if country is None:
        country = country_from_geolocation(description)
    return country, group_for_country(country)


# "H100 (80 GB SXM5)", "A10 (24 GB PCIe)", "GH200 (96 GB)", "B200 (180 GB SXM6)"
_GPU_DESCRIPTION = re.compile(r"^\s*(?P<model>[^()]+?)\s*\(\s*(?P<memory>\d+)\s*GB\s*(?P<form>[^)]*?)\s*\)\s*$", re.IGNORECASE)


def parse_gpu_description(description: str) -> tuple[str, float | None]:
    """Lambda's `gpu_description` -> (a name core.gpus knows, memory GB or None)."""
    match = _GPU_DESCRIPTION.match(description or "")
    if match is None:
        return description.strip(), None
    model, form = match.group("model").strip(), match.group("form").strip()
    return (f"{model} {form}" if form else model), float(match.group("memory"))


def gpu_model(description: str) -> Any:
    """The canonical model of a `gpu_description`: with its form factor first, else the bare model
    ("A10 PCIe" is known as "A10")."""
    name, memory = parse_gpu_description(description)
    model = normalize_gpu(name, memory)
    if not model.known and " " in name:
        bare = normalize_gpu(name.split(" ", 1)[0], memory)
        if bare.known:
            return bare
    return model


def offer_id(instance_type: str, region: str) -> str:
    return f"{instance_type}@{region}"


def parse_offer_id(value: str) -> tuple[str, str]:
    instance_type, sep, region = value.partition("@")
    if not sep or not instance_type or not region:
        raise InvalidRequest(VENDOR, f"not a Lambda offer id: {value!r} (expected '<instance type>@<region>')")
    return instance_type, region


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def map_offers(item: Mapping[str, Any], fetched_at: datetime) -> list[Offer]:
    """One `InstanceTypesItem` -> one offer per region with capacity; [] when the item lacks what an
    offer needs (a name, a GPU count, a price) or has no region with capacity."""
    instance_type = item.get("instance_type")
    regions = item.get("regions_with_capacity_available")
    if not isinstance(instance_type, dict) or not isinstance(regions, list):
        return []
    name = instance_type.get("name")
    cents = _int(instance_type.get("price_cents_per_hour"))
    specs = as_dict(instance_type.get("specs"))
    gpus = _int(specs.get("gpus"))
    description = instance_type.get("gpu_description")
    if not isinstance(name, str) or not name or cents is None or cents < 0 or not gpus or gpus < 1 or not isinstance(description, str):
        return []
    model = gpu_model(description)
    total = cents / 100.0
    offers = []
    for region in regions:
        if not isinstance(region, dict) or not isinstance(region.get("name"), str):
            continue
        country, group = region_location(region["name"], region.get("description"))
        offers.append(
            Offer(
                vendor=VENDOR,
                vendor_offer_id=offer_id(name, region["name"]),
                gpu_type=model.canonical,
                gpu_family=model.family,
                gpu_count=gpus,
                gpu_memory_gb=float(model.memory_gb),
                gpu_price_per_hour=round(total / gpus, 6),
                total_price_per_hour=total,
                contract_type="ondemand",
                vendor_region=region["name"],
                region=group,
                fetched_at=fetched_at,
                gpu_known=model.known,
                vcpu_count=float(specs["vcpus"]) if _int(specs.get("vcpus")) is not None else None,
                memory_gb=float(specs["memory_gib"]) if _int(specs.get("memory_gib")) is not None else None,
                disk_gb=float(specs["storage_gib"]) if _int(specs.get("storage_gib")) is not None else None,
                country=country,
                available=True,  # listed only while the region has capacity
                vendor_data={
                    "instance_type": name,
                    "region_name": region["name"],
                    "vendor_gpu": description,
                    "price_cents_per_hour": cents,
                },
                cluster_max_nodes=MAX_CLUSTER_NODES,
            )
        )
    return offers


def parse_instance_types(body: Any) -> list[dict[str, Any]]:
    """`data` of `GET /instance-types`: an object of `InstanceTypesItem` keyed by type name."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not all(isinstance(item, dict) for item in data.values()):
        raise MalformedBody("instance types: data is not an object of instance types")
    return list(data.values())


def parse_instances(body: Any) -> list[dict[str, Any]]:
    """`data` of `GET /instances`: a list of instances, each with an id and a status."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"] and "status" in row for row in data):
        raise MalformedBody("instances: data is not a list of instances with ids")
    return data


def parse_instance(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or "status" not in data:
        raise MalformedBody("instance: data is not an instance")
    return data


def parse_launch(body: Any) -> list[str]:
    data = body.get("data") if isinstance(body, dict) else None
    ids = data.get("instance_ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise MalformedBody("launch: data.instance_ids is not a list of ids")
    return ids


def parse_ssh_keys(body: Any) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(k, dict) and isinstance(k.get("name"), str) for k in data):
        raise MalformedBody("ssh keys: data is not a list of keys")
    return data


def map_instance(row: Mapping[str, Any]) -> VendorInstance:
    """An `Instance` object -> VendorInstance."""
    status = row.get("status") if isinstance(row.get("status"), str) else None
    ip = str(row.get("ip") or "").strip() or None
    region = as_dict(row.get("region"))
    instance_type = as_dict(row.get("instance_type"))
    specs = as_dict(instance_type.get("specs"))
    cents = _int(instance_type.get("price_cents_per_hour"))
    extra: dict[str, Any] = {"ssh_user": SSH_USER}
    for key in ("hostname", "private_ip", "ssh_key_names", "jupyter_url"):
        if row.get(key) not in (None, "", []):
            extra[key] = row[key]
    if instance_type.get("name"):
        extra["instance_type"] = instance_type["name"]
    return VendorInstance(
        vendor_instance_id=str(row["id"]),
        state=map_state(status),
        raw_status=status,
        marker=str(row["name"]) if row.get("name") else None,
        external_ip=ip,
        ssh_port=SSH_PORT if ip else None,
        vendor_region=str(region["name"]) if region.get("name") else None,
        gpu_name=instance_type.get("gpu_description"),
        gpu_count=_int(specs.get("gpus")),
        price_per_hour=cents / 100.0 if cents is not None else None,
        extra=extra,
    )


def ssh_key_identity(public_key: str) -> tuple[str, str]:
    """`vendors.base.ssh_key_identity` for this vendor's errors."""
    return base_ssh_key_identity(VENDOR, public_key)


def comparable_key(public_key: Any) -> str | None:
    parts = str(public_key or "").split()
    return f"{parts[0]} {parts[1]}" if len(parts) >= 2 else None


# ----- the adapter ---------------------------------------------------------------------------------


class LambdaAdapter:
    vendor = VENDOR
    capabilities = Capabilities(
        stop_start=False,  # Lambda has restart and terminate only
        reboot=True,
        idempotency_key=False,
        marker=True,
        spot=False,  # on-demand only through this API
        stopped_bills_gpu=False,  # nothing can be stopped
    )

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0, rate_scale: float = 1.0, **vendor_options: Any):
        """`vendor_options`: `retry` (a RetryPolicy)."""
        retry = vendor_options.pop("retry", None)
        if vendor_options:
            raise TypeError(f"unknown Lambda adapter options: {', '.join(sorted(vendor_options))}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        root = base_url.rstrip("/")
        if not root.endswith(API_PATH):
            root += API_PATH
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key.strip():  # an empty key goes without the header, so Lambda answers 401, not httpx
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
        self._ssh_key_names: dict[str, str] = {}  # comparable public key -> Lambda key name
        self._ssh_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, parse: Any, *, endpoint: str, safe: bool, **kwargs: Any) -> Any:
        """One call under the shared policy; returns `parse(body)` or raises a typed error."""
        response = await self._http.request(method, path, endpoint=endpoint, safe=safe, **kwargs)
        try:
            return parse(parse_json(VENDOR, response))
        except MalformedBody as exc:
            raise VendorUnavailable(VENDOR, f"{endpoint}: malformed answer ({exc})", status=response.status_code) from None

    # ----- offers ------------------------------------------------------------------------------
    async def list_offers(self) -> list[Offer]:
        items = await self._call("GET", "instance-types", parse_instance_types, endpoint="instance_types", safe=True)
        fetched_at = datetime.now(UTC)
        offers: dict[str, Offer] = {}
        for item in items:
            made = map_offers(item, fetched_at)
            if not made and item.get("regions_with_capacity_available"):
                log.warning("lambda instance type skipped: incomplete", extra={"vendor": VENDOR, "instance_type": str(item.get("instance_type"))[:100]})
            for offer in made:
                offers.setdefault(offer.vendor_offer_id, offer)
        return list(offers.values())

    # ----- create and recover ------------------------------------------------------------------
    async def create(self, request: CreateRequest) -> VendorInstance | None:
        instance_type, region = parse_offer_id(request.offer.vendor_offer_id)
        if len(request.marker) > MAX_NAME:
            raise InvalidRequest(VENDOR, f"our marker is longer than Lambda's {MAX_NAME}-character name")
        body: dict[str, Any] = {
            "region_name": region,
            "instance_type_name": instance_type,
            "file_system_names": [],
            "name": request.marker,
        }
        if request.cloud_init:
            body["user_data"] = request.cloud_init  # cloud-init runs it at first boot
        for attempt in range(2):
            body["ssh_key_names"] = [await self._ssh_key_name(request.ssh_public_key)]
            try:
                ids = await self._call("POST", "instance-operations/launch", parse_launch, endpoint="launch", safe=False, creates=True, json=body)
                break
            except NotFoundOnVendor as exc:
                # A refused launch committed nothing. The resource not found is either our SSH key
                # (deleted on Lambda since we cached its name: register it again, once) or the
                # instance type (no longer sold: fail over).
                if attempt == 0:
                    self._ssh_key_names.clear()
                    continue
                raise CapacityGone(VENDOR, "instance type or region no longer offered", status=exc.status, vendor_message=exc.vendor_message) from None
        if len(ids) != 1:
            log.warning("lambda launch answered several ids", extra={"vendor": VENDOR, "count": len(ids)})
        try:
            return await self.get(ids[0]) if ids else await self.recover(request)
        except VendorError as exc:
            # The launch did happen: a failed read is no error here; the engine's recover finds it.
            log.info("lambda launch accepted; read deferred", extra={"vendor": VENDOR, "error": type(exc).__name__})
            return None

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        matches = [row for row in await self._list_rows() if request.is_ours(row.get("name"))]
        if len(matches) > 1:
            log.warning("lambda: several instances carry one marker", extra={"vendor": VENDOR, "marker": request.marker, "count": len(matches)})
        # The first listed, when a late launch made two (Lambda shows no launch time; its listing
        # keeps launch order): the reconciler deletes the others.
        return map_instance(matches[0]) if matches else None

    async def _ssh_key_name(self, public_key: str) -> str:
        """The Lambda name of the user's key: cached, else found by its key data, else registered."""
        comparable, key_name = ssh_key_identity(public_key)
        async with self._ssh_lock:
            name = self._ssh_key_names.get(comparable)
            if name is None:
                name = await self._find_ssh_key(comparable)
            if name is None:
                try:
                    await self._call(
                        "POST", "ssh-keys", lambda body: body, endpoint="ssh_keys", safe=False,
                        json={"name": key_name, "public_key": public_key.strip()},
                    )
                except InvalidRequest:
                    # Refused, e.g. the name is taken: by this key if an earlier answer was lost.
                    if await self._find_ssh_key(comparable) is None:
                        raise
                name = key_name
            self._ssh_key_names[comparable] = name
            return name

    async def _find_ssh_key(self, comparable: str) -> str | None:
        keys = await self._call("GET", "ssh-keys", parse_ssh_keys, endpoint="ssh_keys", safe=True)
        return next((str(k["name"]) for k in keys if comparable_key(k.get("public_key")) == comparable), None)

    # ----- reading instances -------------------------------------------------------------------
    async def get(self, vendor_instance_id: str) -> VendorInstance:
        row = await self._call("GET", f"instances/{quote(vendor_instance_id, safe='')}", parse_instance, endpoint="get", safe=True)
        return map_instance(row)

    async def list_instances(self) -> list[VendorInstance]:
        return [map_instance(row) for row in await self._list_rows()]

    async def _list_rows(self) -> list[dict[str, Any]]:
        # One answer holds every instance (the API has no paging).
        return await self._call("GET", "instances", parse_instances, endpoint="list", safe=True)

    # ----- changing instances ------------------------------------------------------------------
    async def delete(self, vendor_instance_id: str) -> None:
        try:
            await self._call(
                "POST", "instance-operations/terminate", lambda body: body, endpoint="terminate", safe=True,
                json={"instance_ids": [vendor_instance_id]},
            )
        except NotFoundOnVendor:
            return  # already gone

    async def reboot(self, vendor_instance_id: str) -> None:
        await self._call(
            "POST", "instance-operations/restart", lambda body: body, endpoint="restart", safe=True,
            json={"instance_ids": [vendor_instance_id]},
        )

    async def start(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "Lambda instances cannot be stopped or started (restart and terminate only)")

    async def stop(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "Lambda instances cannot be stopped or started (restart and terminate only)")


VENDOR_SPEC = VendorSpec(
    id=VENDOR,
    name="Lambda Cloud",
    adapter=LambdaAdapter,
    default_url="https://cloud.lambda.ai",
    limits=LIMITS,
    cloud_init=(CLOUD_CONFIG, SCRIPT),  # user_data, run by cloud-init at first boot
    position=4,
)
