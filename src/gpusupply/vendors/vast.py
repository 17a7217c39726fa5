"""Vast.ai adapter (`https://console.vast.ai`: `/api/v0/...` and `/api/v1/instances/`).

Vast is a marketplace: an offer is an "ask" on one host machine, rented on demand at `dph_total`
or as an interruptible bid from `min_bid`. A create accepts the ask (`PUT /api/v0/asks/{id}/`) with
`label` = our marker; Vast has no idempotency key, so a create whose answer was lost is recovered
by listing the account's instances (v1, every page) and matching that label.

Mapping from Vast JSON to core types lives in the pure module-level functions below.

Over 600 lines as one cohesive thing: Vast's API as we read and drive it (its facts, the pure
mapping of its rows and errors, and the adapter that uses them), which reads best in one place.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
from gpusupply.core.offers import ContractType, Offer
from gpusupply.core.regions import country_from_geolocation, group_for_country
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import SCRIPT, Capabilities, CreateRequest, VendorInstance, VendorSpec
from gpusupply.vendors.http import (
    RateLimits,
    RetryPolicy,
    VendorHttp,
    classify_status,
    parse_json,
    parse_retry_after,
)

log = logging.getLogger(__name__)

VENDOR = "vast"
API_V0 = "/api/v0"
INSTANCES_V1 = "/api/v1/instances/"

# A CUDA base image: drivers come from the host, the CUDA runtime and tools from the image.
DEFAULT_IMAGE = "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04"
DEFAULT_DISK_GB = 40.0  # requested at create, and priced into every offer (allocated_storage)
DEFAULT_RUNTYPE = "ssh"
SEARCH_LIMIT = 5000  # offers per catalog read (the cheapest, by dph_total)
PAGE_LIMIT = 25  # v1 maximum
MAX_PAGES = 4000

# Vast's per-endpoint thresholds (docs/vendors/vast.md), read as requests/second per key with a
# small burst; reboot shares the manage bucket (undocumented). The sandbox enforces these.
LIMITS = RateLimits(
    routes={
        "search": (10 / 60, 5.0),  # search_offers: x-rate-limit 10 per minute
        "create": (4.5, 3.0),  # create_instance
        "list": (1.0, 2.0),  # show_instances (v1)
        "get": (2.0, 3.0),  # show_instance
        "delete": (3.0, 3.0),  # destroy_instance
        "manage": (1.0, 2.0),  # manage/stop_instance: start, stop, label and reboot
        "ssh": (1.0, 2.0),  # create / update / delete / attach SSH keys
    },
)

CAPABILITIES = Capabilities(
    stop_start=True, reboot=True, idempotency_key=False, marker=True, spot=True,
    stopped_bills_gpu=False,  # "stopped: halted; disk billed, GPU not"
)

INIT_SCRIPT = "$HOME/.gpusupply-init"


class MalformedInstance(ValueError):
    """A Vast instance row without the fields every row has."""


class MalformedOffer(ValueError):
    """A Vast offer row that cannot be priced or named."""


# ----- pure mapping ------------------------------------------------------------------------------


def _word(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def map_state(actual_status: str | None, intended_status: str | None = None, cur_state: str | None = None) -> InstanceState:
    """Vast's three status fields -> normalized state (pure). Unknown words are UNKNOWN."""
    actual, intended, cur = _word(actual_status), _word(intended_status), _word(cur_state)
    if cur == "unloaded":
        return InstanceState.TERMINATING  # destroy in progress
    if actual in ("", "created", "scheduling"):
        return InstanceState.STOPPED if intended == "stopped" and actual == "" else InstanceState.PROVISIONING
    if actual == "loading":
        return InstanceState.PROVISIONING
    if actual == "running":
        return InstanceState.STOPPING if intended == "stopped" else InstanceState.RUNNING
    if actual == "stopped":
        return InstanceState.PROVISIONING if intended == "running" else InstanceState.STOPPED  # starting again
    if actual == "exited":
        return InstanceState.STOPPED if intended == "stopped" else InstanceState.ERROR
    if actual == "frozen":
        return InstanceState.STOPPED
    if actual == "rebooting":
        return InstanceState.REBOOTING
    return InstanceState.UNKNOWN  # "unknown", "offline", and anything new


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def direct_ssh_port(ports: Any) -> int | None:
    """The host port mapped to the container's 22/tcp, if Vast opened one."""
    if not isinstance(ports, dict):
        return None
    bindings = ports.get("22/tcp")
    if isinstance(bindings, list) and bindings and isinstance(bindings[0], dict):
        port = bindings[0].get("HostPort")
        if isinstance(port, int | str) and str(port).isdigit():
            return int(port)
    return None


def map_instance(raw: Any) -> VendorInstance:
    """A Vast instance row -> VendorInstance; raises MalformedInstance on a broken row."""
    if not isinstance(raw, dict):
        raise MalformedInstance(f"instance is a {type(raw).__name__}, not an object")
    instance_id = _int_id(raw.get("id"))
    if instance_id is None:
        raise MalformedInstance("instance without a numeric id")
    actual = raw.get("actual_status")
    if actual is not None and not isinstance(actual, str):
        raise MalformedInstance(f"instance {instance_id}: actual_status is not a string")
    label = raw.get("label") if isinstance(raw.get("label"), str) else None
    ip = raw.get("public_ipaddr") if isinstance(raw.get("public_ipaddr"), str) and raw.get("public_ipaddr") else None
    ssh_host = raw.get("ssh_host") if isinstance(raw.get("ssh_host"), str) and raw.get("ssh_host") else None
    ssh_port = _int_id(raw.get("ssh_port"))
    gpu_name = raw.get("gpu_name") if isinstance(raw.get("gpu_name"), str) else None
    gpu_ram = _number(raw.get("gpu_ram"))
    geolocation = raw.get("geolocation") if isinstance(raw.get("geolocation"), str) else None
    direct_port = direct_ssh_port(raw.get("ports"))
    state = map_state(actual, raw.get("intended_status"), raw.get("cur_state"))
    return VendorInstance(
        vendor_instance_id=str(instance_id),
        state=state,
        raw_status=actual,
        marker=label,
        external_ip=ip,
        # Vast's own SSH route (sshN.vast.ai:port) is the one every instance has; the direct
        # port, when the host opened one, is in extra.
        ssh_host=ssh_host,
        ssh_port=ssh_port if ssh_host else None,
        vendor_region=geolocation,
        gpu_name=normalize_gpu(gpu_name, gpu_ram / 1024 if gpu_ram else None).canonical if gpu_name else None,
        gpu_count=_int_id(raw.get("num_gpus")),
        price_per_hour=_number(raw.get("dph_total")),
        extra={
            "intended_status": raw.get("intended_status"),
            "cur_state": raw.get("cur_state"),
            "status_msg": raw.get("status_msg"),
            "machine_id": raw.get("machine_id"),
            "is_bid": bool(raw.get("is_bid")),
            "direct_ssh": f"{ip}:{direct_port}" if ip and direct_port else None,
            "region_group": group_for_country(country_from_geolocation(geolocation)),
        },
    )


def map_offer(raw: Any, contract_type: ContractType, fetched_at: datetime, storage_gb: float) -> Offer:
    """One Vast offer row -> our Offer for one contract (pure). On-demand is priced from
    `dph_total`; spot from `min_bid` plus the same storage. Raises MalformedOffer."""
    if not isinstance(raw, dict):
        raise MalformedOffer(f"offer is a {type(raw).__name__}, not an object")
    ask_id = _int_id(raw.get("id"))
    name = raw.get("gpu_name")
    count = _int_id(raw.get("num_gpus"))
    dph_total = _number(raw.get("dph_total"))
    if ask_id is None or not isinstance(name, str) or not name.strip() or not count or dph_total is None:
        raise MalformedOffer(f"offer {raw.get('id')!r} lacks id, gpu_name, num_gpus or dph_total")
    min_bid = _number(raw.get("min_bid"))
    storage_hour = _number(raw.get("storage_total_cost"))
    if storage_hour is None:
        base = _number(raw.get("dph_base"))
        storage_hour = max(dph_total - base, 0.0) if base is not None else 0.0
    if contract_type == "spot":
        if min_bid is None or min_bid <= 0:
            raise MalformedOffer(f"offer {ask_id} has no min_bid for an interruptible rental")
        total = min_bid + storage_hour
    else:
        total = dph_total
    gpu_ram_mb = _number(raw.get("gpu_ram"))
    model = normalize_gpu(name, gpu_ram_mb / 1024 if gpu_ram_mb else None)
    geolocation = raw.get("geolocation") if isinstance(raw.get("geolocation"), str) else None
    country = country_from_geolocation(geolocation)
    cpu_ram_mb = _number(raw.get("cpu_ram"))
    return Offer(
        vendor=VENDOR,
        vendor_offer_id=str(ask_id),
        gpu_type=model.canonical,
        gpu_family=model.family,
        gpu_count=count,
        gpu_memory_gb=float(model.memory_gb) if model.known else round((gpu_ram_mb or 0) / 1024, 1),
        gpu_price_per_hour=round(total / count, 6),
        total_price_per_hour=round(total, 6),
        contract_type=contract_type,
        vendor_region=geolocation or "unknown",
        region=group_for_country(country),
        fetched_at=fetched_at,
        gpu_known=model.known,
        vcpu_count=_number(raw.get("cpu_cores_effective")),
        memory_gb=round(cpu_ram_mb / 1024, 1) if cpu_ram_mb is not None else None,
        disk_gb=_number(raw.get("disk_space")),
        country=country,
        available=raw.get("rentable") is not False and raw.get("rented") is not True,
        vendor_data={
            "ask_id": ask_id,
            "machine_id": raw.get("machine_id"),
            "min_bid": min_bid,
            "storage_gb": storage_gb,
            "storage_per_hour": round(storage_hour, 6),  # what a stopped instance still bills (domain/costs.py)
            "gpu_name": name,
            "reliability": _number(raw.get("reliability")),
            "verification": raw.get("verification"),
            "cuda_max_good": _number(raw.get("cuda_max_good")),
        },
    )


def offers_from_rows(rows: list[Any], fetched_at: datetime, storage_gb: float) -> tuple[list[Offer], int]:
    """Every offer row as an on-demand and, when it has a `min_bid`, a spot offer; returns
    (offers, rows skipped as malformed)."""
    offers: list[Offer] = []
    skipped = 0
    for raw in rows:
        try:
            offers.append(map_offer(raw, "ondemand", fetched_at, storage_gb))
        except MalformedOffer:
            skipped += 1
            continue
        try:
            offers.append(map_offer(raw, "spot", fetched_at, storage_gb))
        except MalformedOffer:
            pass  # no bid market on this ask
    return offers, skipped


def classify_failure(
    status: int, error_code: str | None, message: str, retry_after: float | None, quota_reset_in: float | None = None
) -> VendorError:
    """Vast's status + `error` code -> typed error, keeping Vast's message (pure)."""
    code = (error_code or "").lower()
    text = message.lower()
    if code == "search_quota_exceeded":
        # A daily quota: resets at UTC midnight, so repeating the call now cannot help.
        limited = RateLimited(VENDOR, "daily search quota exceeded", retry_after=quota_reset_in, status=status, vendor_message=message)
        limited.retryable = False
        return limited
    if status == 429 or code == "rate_limit_exceeded":
        return RateLimited(VENDOR, "rate limited", retry_after=retry_after, status=status, vendor_message=message)
    if "no_such_ask" in code or "no_such_ask" in text or status == 410 or (status == 403 and "not your own" in text):
        return CapacityGone(VENDOR, "offer no longer available", status=status, vendor_message=message)
    if code == "auth_error" or (status == 404 and text in ("invalid user key", "session expired. please log in again.")):
        return AuthFailed(VENDOR, "authentication failed", status=status, vendor_message=message)
    if status in (408, 409):
        # 408/409 on a mutation are ambiguous: the outcome is unknown.
        return VendorUnavailable(VENDOR, f"vendor error {status}", status=status, vendor_message=message)
    return classify_status(VENDOR, status, message, retry_after)


def classify_response(vendor: str, response: httpx.Response) -> VendorError:
    """The `ErrorClassifier` VendorHttp uses for non-2xx answers."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code: str | None = None
    message = ""
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        for key in ("msg", "message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                message = body[key]
                break
        if not message:
            message = code or str(body)[:300]
    else:
        message = response.text[:300]
    reset_in: float | None = None
    reset = response.headers.get("X-RateLimit-Reset")
    if reset and reset.isdigit():
        reset_in = max(float(reset) - time.time(), 0.0)
    return classify_failure(response.status_code, code, message, parse_retry_after(response), reset_in)


@dataclass(frozen=True, slots=True)
class InstancePage:
    instances: list[Any]
    next_token: str | None
    total: int | None


def parse_page(body: Any) -> InstancePage:
    """One v1 list page; raises ValueError on any shape Vast never sends."""
    if not isinstance(body, dict):
        raise ValueError("list page is not an object")
    instances, token = body.get("instances"), body.get("next_token")
    if not isinstance(instances, list):
        raise ValueError("list page without an instances array")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("next_token is not a string")
    found = body.get("instances_found")
    if found is not None and (_int_id(found) is None or int(found) != len(instances)):
        raise ValueError(f"instances_found={found!r} but the page has {len(instances)} rows")
    total = body.get("total_instances")
    if total is not None and _int_id(total) is None:
        raise ValueError("total_instances is not a number")
    return InstancePage(instances, token, int(total) if total is not None else None)


def build_onstart(ssh_public_key: str, cloud_init: str | None) -> str:
    """The `onstart` script: installs the user's SSH key, then runs their `#!` script once (on the
    first container start; onstart runs on every start). Raises ValueError on input we cannot carry."""
    key = ssh_public_key.strip()
    if not key or "\n" in key or "\r" in key:
        raise ValueError("the SSH public key must be one line")
    quoted = shlex.quote(key)  # a key's comment may hold quotes ("it's my laptop"); the API accepts it
    lines = [
        'mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"',
        f"grep -qxF -- {quoted} \"$HOME/.ssh/authorized_keys\" 2>/dev/null || printf '%s\\n' {quoted} >> \"$HOME/.ssh/authorized_keys\"",
        'chmod 600 "$HOME/.ssh/authorized_keys"',
    ]
    if cloud_init:
        head = cloud_init.lstrip()
        if head.startswith("#cloud-config"):
            raise ValueError("Vast instances are Docker containers without cloud-init: #cloud-config is not supported, send a #! script")
        if not cloud_init.startswith("#!"):
            raise ValueError("cloud_init for Vast must be a script starting with #! (it runs once, as onstart)")
        encoded = base64.b64encode(cloud_init.encode()).decode()
        lines += [
            f'if [ ! -e "{INIT_SCRIPT}.done" ]; then',
            f'  touch "{INIT_SCRIPT}.done"',
            f'  echo {encoded} | base64 -d > "{INIT_SCRIPT}" && chmod +x "{INIT_SCRIPT}"',
            f'  nohup "{INIT_SCRIPT}" > "{INIT_SCRIPT}.log" 2>&1 &',
            "fi",
        ]
    return "\n".join(lines) + "\n"


def ask_id_of(offer: Offer) -> int:
    ask = _int_id(offer.vendor_data.get("ask_id")) or _int_id(offer.vendor_offer_id)
    if ask is None:
        raise InvalidRequest(VENDOR, f"offer {offer.vendor_offer_id!r} is not a Vast ask id")
    return ask


def _instance_path(vendor_instance_id: str) -> str:
    if _int_id(vendor_instance_id) is None:
        raise InvalidRequest(VENDOR, f"{vendor_instance_id!r} is not a Vast instance id")
    return f"{API_V0}/instances/{vendor_instance_id}/"


def _expect_success(body: Any, what: str) -> None:
    """Vast answers some refusals with 200 and `success: false`."""
    if isinstance(body, dict) and body.get("success") is False:
        message = str(body.get("msg") or body.get("error") or "refused")
        raise InvalidRequest(VENDOR, f"{what} refused", status=200, vendor_message=message)


# ----- adapter -------------------------------------------------------------------------------------


class VastAdapter:
    vendor = VENDOR
    capabilities = CAPABILITIES

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, rate_scale: float = 1.0, **vendor_options: Any
    ):
        """Options: `image`, `disk_gb`, `runtype`, `verified_only` (default True), `search_limit`,
        `page_limit` (1 to 25), `retry` (a RetryPolicy), `clock` (returns an aware datetime),
        `transport` (an httpx transport)."""
        self.image = str(vendor_options.pop("image", DEFAULT_IMAGE))
        self.disk_gb = float(vendor_options.pop("disk_gb", DEFAULT_DISK_GB))
        self.runtype = str(vendor_options.pop("runtype", DEFAULT_RUNTYPE))
        self.verified_only = bool(vendor_options.pop("verified_only", True))
        self.search_limit = int(vendor_options.pop("search_limit", SEARCH_LIMIT))
        self.page_limit = int(vendor_options.pop("page_limit", PAGE_LIMIT))
        retry: RetryPolicy | None = vendor_options.pop("retry", None)
        self._clock: Callable[[], datetime] = vendor_options.pop("clock", None) or (lambda: datetime.now(UTC))
        transport: httpx.AsyncBaseTransport | None = vendor_options.pop("transport", None)
        if vendor_options:
            raise TypeError(f"VastAdapter: unknown option(s) {', '.join(sorted(vendor_options))}")
        if not 1 <= self.page_limit <= PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 1 and {PAGE_LIMIT}")
        if self.disk_gb < 8:
            raise ValueError("disk_gb must be at least 8 (Vast's minimum)")
        if self.search_limit < 1:
            raise ValueError("search_limit must be positive")
        self._http = VendorHttp(
            VENDOR,
            base_url.rstrip("/"),
            # Only the header: keys stay out of URLs (and so out of any access log).
            auth_headers={"Authorization": f"Bearer {api_key}"},
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
    def search_body(self) -> dict[str, Any]:
        """The /bundles/ query: rentable asks nobody holds, that fit our disk, cheapest first."""
        body: dict[str, Any] = {
            "rentable": {"eq": True},
            "rented": {"eq": False},
            "external": {"eq": False},
            "disk_space": {"gte": self.disk_gb},
            "order": [["dph_total", "asc"]],
            "type": "on-demand",
            "limit": self.search_limit,
            "allocated_storage": self.disk_gb,
        }
        if self.verified_only:
            body["verified"] = {"eq": True}
        return body

    async def list_offers(self) -> list[Offer]:
        response = await self._http.request("POST", f"{API_V0}/bundles/", endpoint="search", safe=True, json=self.search_body())
        body = parse_json(VENDOR, response)
        rows = body.get("offers") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise VendorUnavailable(VENDOR, "malformed offer list: no offers array", status=response.status_code)
        offers, skipped = offers_from_rows(rows, self._clock(), self.disk_gb)
        if skipped:
            log.warning("vast offers skipped as malformed", extra={"vendor": VENDOR, "skipped": skipped, "rows": len(rows)})
            if skipped == len(rows):
                raise VendorUnavailable(VENDOR, f"malformed offer list: all {skipped} rows unusable")
        return offers

    # ----- instances ---------------------------------------------------------------------------
    @staticmethod
    def _instance(raw: Any) -> VendorInstance:
        try:
            return map_instance(raw)
        except MalformedInstance as exc:
            raise VendorUnavailable(VENDOR, f"malformed instance: {exc}") from None

    def create_body(self, request: CreateRequest) -> dict[str, Any]:
        """The accept-ask body for a request (no I/O); raises InvalidRequest on what Vast cannot take."""
        offer = request.offer
        try:
            onstart = build_onstart(request.ssh_public_key, request.cloud_init)
        except ValueError as exc:
            raise InvalidRequest(VENDOR, str(exc)) from None
        body: dict[str, Any] = {
            "client_id": "me",
            "image": self.image,
            "disk": self.disk_gb,
            "label": request.marker,
            "runtype": self.runtype,
            "onstart": onstart,
            "env": {},
            "target_state": "running",
            "cancel_unavail": True,  # never leave a stopped instance behind when the machine is busy
        }
        if offer.contract_type == "spot":
            bid = _number(offer.vendor_data.get("min_bid"))
            if bid is None or bid <= 0:
                raise InvalidRequest(VENDOR, f"spot offer {offer.vendor_offer_id} carries no bid price")
            body["price"] = bid
        return body

    async def create(self, request: CreateRequest) -> VendorInstance:
        offer = request.offer
        if offer.vendor != VENDOR:
            raise InvalidRequest(VENDOR, f"offer is from {offer.vendor!r}, not vast")
        ask = ask_id_of(offer)
        body = self.create_body(request)
        response = await self._http.request(
            "PUT", f"{API_V0}/asks/{ask}/", endpoint="create",
            safe=False,  # never retried here: the engine calls recover, which looks for our label
            creates=True,
            ok=(200, 201), json=body,
        )
        data = parse_json(VENDOR, response)
        _expect_success(data, "create")
        new_contract = _int_id(data.get("new_contract")) if isinstance(data, dict) else None
        if new_contract is None:
            raise VendorUnavailable(VENDOR, "create answered without new_contract; outcome unknown", status=response.status_code)
        instance_id = str(new_contract)
        try:
            await self._attach_key(instance_id, request.ssh_public_key)
        except VendorError as exc:
            # The instance exists but is not reachable yet: recover finds it by label and attaches again.
            raise VendorUnavailable(VENDOR, f"instance {instance_id} created, but attaching the SSH key failed ({type(exc).__name__})",
                                    vendor_message=exc.vendor_message) from None
        return VendorInstance(
            vendor_instance_id=instance_id,
            state=InstanceState.PROVISIONING,
            raw_status=None,
            marker=request.marker,
            vendor_region=offer.vendor_region,
            gpu_name=offer.gpu_type,
            gpu_count=offer.gpu_count,
            price_per_hour=offer.total_price_per_hour,
            extra={"ask_id": ask, "is_bid": offer.contract_type == "spot"},
        )

    async def _attach_key(self, vendor_instance_id: str, ssh_public_key: str) -> None:
        """Attach the user's key through Vast (its SSH proxy reads it); repeating it is harmless."""
        response = await self._http.request(
            "POST", _instance_path(vendor_instance_id) + "ssh/", endpoint="ssh", safe=True, json={"ssh_key": ssh_public_key.strip()}
        )
        _expect_success(parse_json(VENDOR, response), "attach SSH key")

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        """The instance an earlier create of this request made: the one whose label is our marker (the
        oldest, when a late create made two: the reconciler deletes the others as duplicates)."""
        marker = request.marker
        found = sorted((i for i in await self._list({"label": {"in": list(request.markers)}}) if request.is_ours(i.marker)),
                       key=lambda i: int(i.vendor_instance_id))
        if not found:
            return None
        if len(found) > 1:
            log.warning("vast instances share one marker", extra={"vendor": VENDOR, "marker": marker,
                                                                   "instances": [i.vendor_instance_id for i in found]})
        instance = found[0]
        try:
            await self._attach_key(instance.vendor_instance_id, request.ssh_public_key)
        except NotFoundOnVendor:
            return None  # gone since the listing
        return instance

    async def get(self, vendor_instance_id: str) -> VendorInstance:
        response = await self._http.request("GET", _instance_path(vendor_instance_id), endpoint="get", safe=True, params={"owner": "me"})
        body = parse_json(VENDOR, response)
        if not isinstance(body, dict) or "instances" not in body:
            raise VendorUnavailable(VENDOR, "malformed instance answer: no instances key")
        if body["instances"] is None:  # how Vast shows a destroyed or unknown instance
            raise NotFoundOnVendor(VENDOR, f"instance {vendor_instance_id} not found", status=response.status_code)
        return self._instance(body["instances"])

    async def list_instances(self) -> list[VendorInstance]:
        return await self._list({})

    async def _list(self, select_filters: dict[str, Any]) -> list[VendorInstance]:
        """Every instance matching the filters, over all v1 pages; fails closed."""
        found: dict[str, VendorInstance] = {}
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {
                "select_filters": json.dumps(select_filters),
                "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
                "limit": str(self.page_limit),
            }
            if token:
                params["after_token"] = token
            response = await self._http.request("GET", INSTANCES_V1, endpoint="list", safe=True, params=params)
            try:
                page = parse_page(parse_json(VENDOR, response))
            except ValueError as exc:
                raise VendorUnavailable(VENDOR, f"malformed instance list: {exc}", status=response.status_code) from None
            for raw in page.instances:
                instance = self._instance(raw)
                found[instance.vendor_instance_id] = instance
            if page.next_token is None:
                # Keyset pages only grow at the end, so the last page's total is a floor for what we hold.
                if page.total is not None and len(found) < page.total:
                    raise VendorUnavailable(VENDOR, f"malformed instance list: {len(found)} of {page.total} instances and no next_token")
                return list(found.values())
            if page.next_token in seen:
                raise VendorUnavailable(VENDOR, "instance list cursor repeats")
            seen.add(page.next_token)
            token = page.next_token
        raise VendorUnavailable(VENDOR, f"instance list longer than {MAX_PAGES} pages")

    async def delete(self, vendor_instance_id: str) -> None:
        try:
            response = await self._http.request("DELETE", _instance_path(vendor_instance_id), endpoint="delete", safe=True, json={})
        except NotFoundOnVendor:
            return  # already gone
        _expect_success(parse_json(VENDOR, response), "destroy")

    async def _manage(self, vendor_instance_id: str, path: str, body: dict[str, Any], what: str) -> None:
        response = await self._http.request("PUT", path, endpoint="manage", safe=True, json=body)
        _expect_success(parse_json(VENDOR, response), what)

    async def start(self, vendor_instance_id: str) -> None:
        await self._manage(vendor_instance_id, _instance_path(vendor_instance_id), {"state": "running"}, "start")

    async def stop(self, vendor_instance_id: str) -> None:
        await self._manage(vendor_instance_id, _instance_path(vendor_instance_id), {"state": "stopped"}, "stop")

    async def reboot(self, vendor_instance_id: str) -> None:
        if _int_id(vendor_instance_id) is None:
            raise InvalidRequest(VENDOR, f"{vendor_instance_id!r} is not a Vast instance id")
        await self._manage(vendor_instance_id, f"{API_V0}/instances/reboot/{vendor_instance_id}/", {}, "reboot")


VENDOR_SPEC = VendorSpec(
    id=VENDOR,
    name="Vast.ai",
    adapter=VastAdapter,
    default_url="https://console.vast.ai",
    limits=LIMITS,
    cloud_init=(SCRIPT,),  # containers without cloud-init: a script, run once as onstart
    position=1,
)
