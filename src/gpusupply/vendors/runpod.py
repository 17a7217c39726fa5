"""RunPod adapter: RunPod's GraphQL API (`POST {base}/graphql`, `Authorization: Bearer <key>`).

RunPod's REST v1 is retired and REST v2 is in beta; the official SDK and `runpodctl` drive RunPod
through GraphQL, and so do we (docs/vendors/runpod.md has the whole story):
- Offers come from `gpuTypes`: per GPU type, prices per GPU-hour for secure and community cloud
  and the interruptible (spot) bid floor, with `lowestPrice(input: {gpuCount, secureCloud})` asked
  for every count from 1 to `MAX_GPU_COUNT` in one document (GraphQL aliases).
- A create is `podFindAndDeployOnDemand` (on-demand) or `podRentInterruptable` (spot, `bidPerGpu`
  at the type's `minimumBidPrice`). The pod's `name` is our marker: RunPod has no idempotency key,
  so a create whose answer was lost is found again by listing `myself { pods }`.
- The user's SSH key goes in the pod's environment as `PUBLIC_KEY` (RunPod's images install it for
  root); SSH is the pod's public IP and the public port mapped to 22/tcp.
- Errors come in `errors[]`, usually under HTTP 200: `classify_failure` reads them.
- RunPod publishes no GraphQL rate limit: we assume `LIMITS` (the sandbox enforces
  the same figures) and pace under them.

The mapping from RunPod JSON to core types is in pure module-level functions (map_offers, map_pod,
map_state, ssh_endpoint, classify_failure), tested table-driven in tests/vendors/test_runpod.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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
from gpusupply.core.offers import ContractType, Offer
from gpusupply.core.regions import group_for_country
from gpusupply.core.states import InstanceState
from gpusupply.vendors.base import Capabilities, CreateRequest, VendorInstance, VendorSpec
from gpusupply.vendors.http import (
    RateLimits,
    RetryPolicy,
    VendorHttp,
    as_dict,
    parse_json,
    parse_retry_after,
    vendor_message,
)

log = logging.getLogger(__name__)

VENDOR = "runpod"
GRAPHQL_PATH = "/graphql"
MAX_GPU_COUNT = 8  # the largest pod RunPod rents (one machine); counts above are never asked for
CLOUDS = ("SECURE", "COMMUNITY")
# RunPod's PyTorch image: it starts sshd and installs $PUBLIC_KEY for root on start.
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
DEFAULT_CONTAINER_DISK_GB = 40
SSH_USER = "root"

# Operation group -> (requests per second, burst) we assume RunPod allows per API key on GraphQL.
# RunPod publishes none for GraphQL (REST v2 documents per-user minute/hour/day windows whose
# example policy is 60/min, 3000/h, 50,000/day). The sandbox enforces exactly these figures.
LIMITS = RateLimits(
    routes={
        "catalog": (1.0, 5.0),  # gpuTypes
        "create": (1.0, 3.0),  # podFindAndDeployOnDemand, podRentInterruptable
        "list": (2.0, 5.0),  # myself { pods }
        "read": (10.0, 20.0),  # pod(input: {podId})
        "action": (5.0, 10.0),  # podStop, podResume, podTerminate
    },
    documented=False,
)
# Which group each root field of a document belongs to (the sandbox reads this too).
OPERATION_GROUPS: dict[str, str] = {
    "gpuTypes": "catalog",
    "podFindAndDeployOnDemand": "create",
    "podRentInterruptable": "create",
    "myself": "list",
    "pod": "read",
    "podStop": "action",
    "podResume": "action",
    "podTerminate": "action",
}

CAPABILITIES = Capabilities(
    stop_start=True,
    reboot=False,  # GraphQL has no reboot of a pod that keeps its address
    idempotency_key=False,
    marker=True,
    spot=True,
    # "You only pay for the container disk when the pod is running"; we create pods without a
    # volume disk, so a stopped pod bills nothing.
    stopped_bills_gpu=False,
)

# ----- documents -----------------------------------------------------------------------------------

POD_FIELDS = """
  id name desiredStatus podType imageName gpuCount vcpuCount memoryInGb containerDiskInGb volumeInGb
  costPerHr uptimeSeconds lastStatusChange machineId env ports
  machine { gpuDisplayName }
  runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }
"""


def catalog_query(max_count: int = MAX_GPU_COUNT) -> str:
    """`gpuTypes` with `lowestPrice` for every count and cloud, as aliases `secure1`, `community1`..."""
    prices = "\n".join(
        f"    {cloud.lower()}{n}: lowestPrice(input: {{gpuCount: {n}, secureCloud: {str(cloud == 'SECURE').lower()}}}) "
        "{ minimumBidPrice uninterruptablePrice stockStatus countryCode minVcpu minMemory }"
        for n in range(1, max_count + 1)
        for cloud in CLOUDS
    )
    return (
        "query GpuOffers {\n  gpuTypes {\n"
        "    id displayName manufacturer memoryInGb maxGpuCount secureCloud communityCloud\n"
        "    securePrice communityPrice secureSpotPrice communitySpotPrice\n"
        f"{prices}\n  }}\n}}\n"
    )


LIST_PODS = f"query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}"
GET_POD = f"query Pod($podId: String!) {{ pod(input: {{podId: $podId}}) {{ {POD_FIELDS} }} }}"
DEPLOY_ON_DEMAND = (
    "mutation Deploy($input: PodFindAndDeployOnDemandInput) "
    f"{{ podFindAndDeployOnDemand(input: $input) {{ {POD_FIELDS} }} }}"
)
RENT_INTERRUPTABLE = (
    "mutation Rent($input: PodRentInterruptableInput!) "
    f"{{ podRentInterruptable(input: $input) {{ {POD_FIELDS} }} }}"
)
STOP_POD = "mutation Stop($podId: String!) { podStop(input: {podId: $podId}) { id desiredStatus } }"
RESUME_POD = "mutation Resume($podId: String!, $gpuCount: Int!) { podResume(input: {podId: $podId, gpuCount: $gpuCount}) { id desiredStatus } }"
TERMINATE_POD = "mutation Terminate($podId: String!) { podTerminate(input: {podId: $podId}) }"


class MalformedAnswer(ValueError):
    """JSON, but not the shape RunPod documents for this operation."""


# ----- errors --------------------------------------------------------------------------------------

_CAPACITY_WORDS = (
    "no longer any instances available",
    "no instances available",
    "not enough",
    "does not have the resources",
    "no gpus available",
    "out of stock",
)
_AUTH_WORDS = ("unauthorized", "unauthenticated", "api key", "forbidden", "permission")
_NOT_FOUND_WORDS = ("not found", "does not exist", "no pod")
_UPSTREAM_WORDS = ("something went wrong", "internal server error", "try again later", "timed out")


def classify_failure(status: int, code: str | None, message: str, retry_after: float | None = None) -> VendorError:
    """One GraphQL error (its message and `extensions.code`) under an HTTP status -> a typed error.

    RunPod answers most failures with HTTP 200 and `errors[]`, so the code and the words decide:
    no capacity is `CapacityGone` (the engine fails over), a refused input `InvalidRequest`."""
    text = message.lower()
    code = (code or "").upper()
    if status == 429 or code == "RATE_LIMITED" or "too many requests" in text or "rate limit" in text:
        return RateLimited(VENDOR, "rate limited", retry_after=retry_after, status=status, vendor_message=message)
    if status in (401, 403) or code in ("UNAUTHENTICATED", "FORBIDDEN") or any(w in text for w in _AUTH_WORDS):
        return AuthFailed(VENDOR, "authentication failed", status=status, vendor_message=message)
    if any(w in text for w in _CAPACITY_WORDS):
        return CapacityGone(VENDOR, "no capacity for this pod", status=status, vendor_message=message)
    if status >= 500 or code == "INTERNAL_SERVER_ERROR" or any(w in text for w in _UPSTREAM_WORDS):
        return VendorUnavailable(VENDOR, f"vendor error ({code or status})", status=status, vendor_message=message)
    if status == 404 or any(w in text for w in _NOT_FOUND_WORDS):
        return NotFoundOnVendor(VENDOR, "not found", status=status, vendor_message=message)
    return InvalidRequest(VENDOR, "request refused", status=status, vendor_message=message)


def first_error(body: Any) -> tuple[str, str | None] | None:
    """(message, extensions.code) of the first entry of `errors[]`, or None when there is none."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if not errors:
        return None
    first = errors[0] if isinstance(errors, list) else errors
    if not isinstance(first, dict):
        return str(first)[:300], None
    extensions = as_dict(first.get("extensions"))
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    return str(first.get("message") or "GraphQL error"), code


def classify_response(vendor: str, response: httpx.Response) -> VendorError:
    """The `ErrorClassifier` for non-2xx answers (429, 5xx, 401, and 400 for invalid documents)."""
    try:
        found = first_error(response.json())
    except ValueError:
        found = None
    message, code = found if found is not None else (vendor_message(response), None)
    return classify_failure(response.status_code, code, message, parse_retry_after(response))


# ----- states, offers, pods ------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_preempted(pod: Mapping[str, Any]) -> bool:
    """An interruptible pod RunPod took back: EXITED, and its GPUs are gone."""
    return pod.get("podType") == "INTERRUPTABLE" and pod.get("desiredStatus") == "EXITED" and not pod.get("gpuCount")


def map_state(pod: Mapping[str, Any]) -> InstanceState:
    """`desiredStatus` (+ whether the container runs) -> InstanceState. RunPod sets desiredStatus
    at once on a request; the runtime block appears only when the container is up."""
    status = str(pod.get("desiredStatus") or "").upper()
    if status == "RUNNING":
        return InstanceState.RUNNING if isinstance(pod.get("runtime"), dict) else InstanceState.PROVISIONING
    if status == "CREATED":
        return InstanceState.PROVISIONING
    if status == "RESTARTING":
        return InstanceState.REBOOTING
    if status == "EXITED":
        # Preempted: the pod record stays, but without GPUs it is not the machine we rented.
        return InstanceState.TERMINATED if is_preempted(pod) else InstanceState.STOPPED
    if status == "PAUSED":
        return InstanceState.STOPPED
    if status == "DEAD":
        return InstanceState.ERROR
    if status == "TERMINATED":
        return InstanceState.TERMINATED
    return InstanceState.UNKNOWN


def ssh_endpoint(runtime: Any) -> tuple[str | None, int | None]:
    """(public IP, public port) of the container's 22/tcp, when RunPod published one."""
    if not isinstance(runtime, dict) or not isinstance(runtime.get("ports"), list):
        return None, None
    for port in runtime["ports"]:
        if (
            isinstance(port, dict)
            and port.get("privatePort") == 22
            and port.get("isIpPublic") is True
            and str(port.get("type") or "tcp").lower() == "tcp"
            and isinstance(port.get("ip"), str)
            and port["ip"]
            and _count(port.get("publicPort"))
        ):
            return port["ip"], port["publicPort"]
    return None, None


def map_pod(pod: Mapping[str, Any]) -> VendorInstance:
    """A pod object (list or detail) -> VendorInstance; raises MalformedAnswer without an id."""
    pod_id = pod.get("id")
    if not isinstance(pod_id, str) or not pod_id:
        raise MalformedAnswer("pod without an id")
    state = map_state(pod)
    ip, port = ssh_endpoint(pod.get("runtime")) if state == InstanceState.RUNNING else (None, None)
    machine = as_dict(pod.get("machine"))
    gpu_name = machine.get("gpuDisplayName") if isinstance(machine.get("gpuDisplayName"), str) else None
    raw = pod.get("desiredStatus") if isinstance(pod.get("desiredStatus"), str) else None
    return VendorInstance(
        vendor_instance_id=pod_id,
        state=state,
        raw_status=f"{raw} (interrupted)" if is_preempted(pod) else raw,
        marker=pod["name"] if isinstance(pod.get("name"), str) and pod["name"] else None,
        external_ip=ip,
        ssh_port=port,
        gpu_name=normalize_gpu(gpu_name).canonical if gpu_name else None,
        gpu_count=_count(pod.get("gpuCount")),
        price_per_hour=_number(pod.get("costPerHr")),
        lingers=is_preempted(pod),
        extra={
            "pod_type": pod.get("podType"),
            "machine_id": pod.get("machineId"),
            "uptime_seconds": pod.get("uptimeSeconds"),
            "last_status_change": pod.get("lastStatusChange"),
            "ssh_user": SSH_USER,
            "preempted": is_preempted(pod),
        },
    )


def _offer(gpu: Mapping[str, Any], cloud: str, count: int, contract: ContractType, per_gpu: float,
           price_entry: Mapping[str, Any], fetched_at: datetime) -> Offer:
    memory = _number(gpu.get("memoryInGb"))
    display = str(gpu.get("displayName") or gpu["id"])
    model = normalize_gpu(display, memory)
    country = price_entry.get("countryCode") if isinstance(price_entry.get("countryCode"), str) else None
    stock = price_entry.get("stockStatus") if isinstance(price_entry.get("stockStatus"), str) else None
    total = round(per_gpu * count, 6)
    return Offer(
        vendor=VENDOR,
        vendor_offer_id=f"{gpu['id']}|{cloud}|{count}",
        gpu_type=model.canonical,
        gpu_family=model.family,
        gpu_count=count,
        gpu_memory_gb=float(model.memory_gb) if model.known else (memory or 0.0),
        gpu_price_per_hour=round(per_gpu, 6),
        total_price_per_hour=total,
        contract_type=contract,
        vendor_region=f"{cloud.lower()}-{country}" if country else cloud.lower(),
        region=group_for_country(country),
        fetched_at=fetched_at,
        gpu_known=model.known,
        vcpu_count=_number(price_entry.get("minVcpu")),
        memory_gb=_number(price_entry.get("minMemory")),
        disk_gb=float(DEFAULT_CONTAINER_DISK_GB),
        country=country,
        available=bool(stock),
        vendor_data={
            "gpu_type_id": gpu["id"],
            "cloud_type": cloud,
            "gpu_count": count,
            "country_code": country,
            "stock_status": stock,
            "min_bid": _number(price_entry.get("minimumBidPrice")),
            "vendor_gpu": display,
            "storage_per_hour": 0.0,  # no volume disk: a stopped pod bills nothing
        },
    )


def map_offers(gpu: Mapping[str, Any], fetched_at: datetime) -> list[Offer]:
    """One `gpuTypes` entry -> its offers: per cloud it is offered in and per count up to
    `maxGpuCount` with a price entry, an on-demand offer and, when RunPod takes bids, a spot one."""
    if not isinstance(gpu.get("id"), str) or not gpu["id"]:
        raise MalformedAnswer("GPU type without an id")
    max_count = _count(gpu.get("maxGpuCount")) or 1
    offers: list[Offer] = []
    for cloud in CLOUDS:
        key = cloud.lower()
        if gpu.get(f"{key}Cloud") is not True:
            continue
        list_price = _number(gpu.get(f"{key}Price"))
        for count in range(1, min(max_count, MAX_GPU_COUNT) + 1):
            entry = gpu.get(f"{key}{count}")
            if not isinstance(entry, dict):
                continue
            on_demand = _number(entry.get("uninterruptablePrice")) or list_price
            if on_demand is not None and on_demand > 0:
                offers.append(_offer(gpu, cloud, count, "ondemand", on_demand, entry, fetched_at))
            bid = _number(entry.get("minimumBidPrice"))
            if bid is not None and bid > 0:
                offers.append(_offer(gpu, cloud, count, "spot", bid, entry, fetched_at))
    return offers


def parse_pods(data: Any) -> list[dict[str, Any]]:
    """`data.myself.pods`: a list of pod objects with string ids, or MalformedAnswer."""
    myself = data.get("myself") if isinstance(data, dict) else None
    pods = myself.get("pods") if isinstance(myself, dict) else None
    if not isinstance(pods, list) or not all(isinstance(p, dict) and isinstance(p.get("id"), str) and p["id"] for p in pods):
        raise MalformedAnswer("myself.pods is not a list of pods with ids")
    return pods


def create_input(request: CreateRequest, *, image: str = DEFAULT_IMAGE) -> tuple[str, str, dict[str, Any]]:
    """(document, root field, input) of the create for a request (pure); InvalidRequest when RunPod
    cannot carry it."""
    offer = request.offer
    if offer.vendor != VENDOR:
        raise InvalidRequest(VENDOR, f"offer is from {offer.vendor!r}, not runpod")
    if request.cloud_init:
        # A pod is a container started by its image: no cloud-init, and a start command would
        # replace the one that runs sshd. Refusing beats dropping the user's script silently.
        raise InvalidRequest(VENDOR, "RunPod pods take no cloud-init / user-data; cloud_init cannot be applied")
    key = request.ssh_public_key.strip()
    if not key or "\n" in key or len(key.split()) < 2:
        raise InvalidRequest(VENDOR, "ssh public key is not one line in OpenSSH format ('type base64 [comment]')")
    data = offer.vendor_data
    gpu_type_id = data.get("gpu_type_id")
    if not isinstance(gpu_type_id, str) or not gpu_type_id:
        gpu_type_id = offer.vendor_offer_id.split("|", 1)[0]
    fields: dict[str, Any] = {
        "name": request.marker,
        "imageName": image,
        "gpuTypeId": gpu_type_id,
        "gpuCount": offer.gpu_count,
        "cloudType": data.get("cloud_type") if data.get("cloud_type") in CLOUDS else "ALL",
        "supportPublicIp": True,
        "startSsh": True,
        "ports": "22/tcp",
        "containerDiskInGb": int(offer.disk_gb or DEFAULT_CONTAINER_DISK_GB),
        "volumeInGb": 0,
        "env": [{"key": "PUBLIC_KEY", "value": key}],
    }
    if isinstance(data.get("country_code"), str) and data["country_code"]:
        fields["countryCode"] = data["country_code"]
    if offer.contract_type == "spot":
        bid = _number(data.get("min_bid")) or offer.gpu_price_per_hour
        if not bid or bid <= 0:
            raise InvalidRequest(VENDOR, f"spot offer {offer.vendor_offer_id} carries no bid price")
        fields["bidPerGpu"] = bid
        return RENT_INTERRUPTABLE, "podRentInterruptable", fields
    return DEPLOY_ON_DEMAND, "podFindAndDeployOnDemand", fields


# ----- the adapter ---------------------------------------------------------------------------------


class RunPodAdapter:
    vendor = VENDOR
    capabilities = CAPABILITIES

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0, rate_scale: float = 1.0, **vendor_options: Any):
        """Options: `image` (the pod image, default RunPod's PyTorch image), `retry` (a RetryPolicy),
        `transport` (an httpx transport)."""
        self.image = str(vendor_options.pop("image", DEFAULT_IMAGE))
        retry = vendor_options.pop("retry", None)
        transport: httpx.AsyncBaseTransport | None = vendor_options.pop("transport", None)
        if vendor_options:
            raise TypeError(f"unknown RunPod adapter options: {', '.join(sorted(vendor_options))}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        headers = {"Content-Type": "application/json"}
        if api_key.strip():  # an empty key goes without the header, so RunPod answers 401, not httpx
            headers["Authorization"] = f"Bearer {api_key.strip()}"
        root = base_url.rstrip("/")
        if root.endswith(GRAPHQL_PATH):
            root = root[: -len(GRAPHQL_PATH)]
        self._retry = retry or RetryPolicy()
        self._http = VendorHttp(
            VENDOR, root, auth_headers=headers, limits=LIMITS, rate_scale=rate_scale, timeout=timeout, retry=retry,
            classifier=classify_response, transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _graphql(
        self, document: str, variables: dict[str, Any] | None, *, group: str, safe: bool, creates: bool = False
    ) -> dict[str, Any]:
        """One GraphQL call under the shared policy; returns `data`, or raises the typed error of
        `errors[]`. A safe call whose error is retryable (rate limit, upstream) is tried again."""
        attempts = 3 if safe else 1
        for attempt in range(attempts):
            response = await self._http.request(
                "POST", GRAPHQL_PATH, endpoint=group, safe=safe, creates=creates, json={"query": document, "variables": variables or {}}
            )
            body = parse_json(VENDOR, response)
            found = first_error(body)
            if found is None:
                data = body.get("data") if isinstance(body, dict) else None
                if not isinstance(data, dict):
                    raise VendorUnavailable(VENDOR, f"{group}: answer without data", status=response.status_code)
                return data
            message, code = found
            error = classify_failure(response.status_code, code, message)
            if not (error.retryable and attempt + 1 < attempts):
                raise error
            delay = self._retry.delay(attempt, error.retry_after if isinstance(error, RateLimited) else None)
            log.info("runpod GraphQL error retried", extra={"vendor": VENDOR, "endpoint": group, "error": type(error).__name__})
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # ----- offers ------------------------------------------------------------------------------
    async def list_offers(self) -> list[Offer]:
        data = await self._graphql(catalog_query(), None, group="catalog", safe=True)
        gpus = data.get("gpuTypes")
        if not isinstance(gpus, list) or not all(isinstance(g, dict) for g in gpus):
            raise VendorUnavailable(VENDOR, "gpuTypes: malformed answer (not a list of GPU types)")
        fetched_at = datetime.now(UTC)
        offers: list[Offer] = []
        skipped = 0
        for gpu in gpus:
            try:
                offers.extend(map_offers(gpu, fetched_at))
            except MalformedAnswer:
                skipped += 1
        if skipped:
            log.warning("runpod GPU types skipped as malformed", extra={"vendor": VENDOR, "skipped": skipped})
            if skipped == len(gpus):
                raise VendorUnavailable(VENDOR, f"gpuTypes: all {skipped} entries malformed")
        return offers

    # ----- create and recover ------------------------------------------------------------------
    async def create(self, request: CreateRequest) -> VendorInstance:
        document, field, fields = create_input(request, image=self.image)
        data = await self._graphql(document, {"input": fields}, group="create", safe=False, creates=True)  # never retried: recover finds it
        pod = data.get(field)
        if not isinstance(pod, dict):
            raise VendorUnavailable(VENDOR, f"{field} answered without a pod; outcome unknown")
        try:
            return map_pod(pod)
        except MalformedAnswer as exc:
            raise VendorUnavailable(VENDOR, f"{field}: malformed pod ({exc}); outcome unknown") from None

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        """The pod an earlier create of this request made: the one named with our marker (its
        current or pre-installation-id form). When a late create made two, the first listed: the
        reconciler deletes the others as duplicates."""
        found = [i for i in await self.list_instances() if request.is_ours(i.marker)]
        if len(found) > 1:
            log.warning("runpod: several pods carry one marker", extra={"vendor": VENDOR, "marker": request.marker, "count": len(found)})
        live = [i for i in found if i.state != InstanceState.TERMINATED]
        return (live or found)[0] if found else None

    # ----- reading pods ------------------------------------------------------------------------
    async def get(self, vendor_instance_id: str) -> VendorInstance:
        data = await self._graphql(GET_POD, {"podId": vendor_instance_id}, group="read", safe=True)
        pod = data.get("pod")
        if pod is None:
            raise NotFoundOnVendor(VENDOR, f"pod {vendor_instance_id} not found")
        if not isinstance(pod, dict):
            raise VendorUnavailable(VENDOR, "pod: malformed answer")
        try:
            return map_pod(pod)
        except MalformedAnswer as exc:
            raise VendorUnavailable(VENDOR, f"pod: malformed answer ({exc})") from None

    async def list_instances(self) -> list[VendorInstance]:
        data = await self._graphql(LIST_PODS, None, group="list", safe=True)
        try:
            return [map_pod(pod) for pod in parse_pods(data)]
        except MalformedAnswer as exc:
            raise VendorUnavailable(VENDOR, f"myself.pods: malformed answer ({exc})") from None

    # ----- changing pods -----------------------------------------------------------------------
    async def delete(self, vendor_instance_id: str) -> None:
        try:
            await self._graphql(TERMINATE_POD, {"podId": vendor_instance_id}, group="action", safe=True)
        except NotFoundOnVendor:
            return  # gone already

    async def stop(self, vendor_instance_id: str) -> None:
        pod = await self._own_pod(vendor_instance_id, "stop")
        if pod.state in (InstanceState.STOPPED, InstanceState.STOPPING):
            return  # a retry after a lost answer
        await self._graphql(STOP_POD, {"podId": vendor_instance_id}, group="action", safe=True)

    async def start(self, vendor_instance_id: str) -> None:
        pod = await self._own_pod(vendor_instance_id, "start")
        if pod.state in (InstanceState.RUNNING, InstanceState.PROVISIONING):
            return
        await self._graphql(RESUME_POD, {"podId": vendor_instance_id, "gpuCount": pod.gpu_count or 1}, group="action", safe=True)

    async def _own_pod(self, vendor_instance_id: str, action: str) -> VendorInstance:
        pod = await self.get(vendor_instance_id)
        if pod.extra.get("pod_type") == "INTERRUPTABLE":
            # Resuming a spot pod is a new bid (podBidResume) that may lose its GPUs: we do not
            # stop what we could not promise to start again.
            raise Unsupported(VENDOR, f"{action}: RunPod interruptible (spot) pods cannot be stopped and started by gpusupply")
        return pod

    async def reboot(self, vendor_instance_id: str) -> None:
        raise Unsupported(VENDOR, "RunPod pods have no reboot through gpusupply (stop and start instead)")


VENDOR_SPEC = VendorSpec(
    id=VENDOR,
    name="RunPod",
    adapter=RunPodAdapter,
    default_url="https://api.runpod.io",  # GraphQL at {url}/graphql
    limits=LIMITS,
    cloud_init=(),  # containers started by their image: no user data
    position=5,
)
