"""RunPod's GraphQL API, simulated: `POST /graphql` with GPU types, pods, deploy, rent, stop,
resume and terminate, served by a real GraphQL implementation (graphql-core).

Why graphql-core: it is the reference implementation (GraphQL.js ported), small and without a web
framework of its own; a schema written in SDL (`SCHEMA`, the subset of RunPod's schema that the
official SDK and our adapter use) gets parsing, validation, variables, aliases and error shapes
exactly as the spec says, so the official `runpod` SDK works against it unchanged. Strawberry and
Ariadne are built for writing new APIs (code-first types, ASGI apps) and add nothing here.

Faithful to RunPod's GraphQL API as its SDK and docs show it (docs/vendors/runpod.md):
`Authorization: Bearer <key>` (or `?api_key=`), HTTP 401 for a bad key (the SDK raises its
AuthenticationError on exactly that), every other failure as `errors[]` under HTTP 200 with `data`
null where it failed, the no-capacity message RunPod sends, `podTerminate` returning nothing,
`pod(input: {podId})` answering null for an unknown pod, an interruptible pod taken back shown
EXITED with no GPU.

Inferred where RunPod documents nothing (the docs page says so):
- Rate limits: `LIMITS` of the adapter module, per key and operation group, answered
  with HTTP 429, `errors[]` and `Retry-After`.
- Capacity is machines per data center: a pod takes its GPUs from one machine; a stop keeps them
  (RunPod keeps a stopped pod on its host), a terminate or a preemption frees them.
- Only interruptible pods are preempted (the `preempt` fault); on-demand pods are never taken back.
- The other faults: `lost` and `late_create` on the deploy mutations, `malformed` on `myself` and
  `gpuTypes`, `phantom_404` on `pod(...)` (null although the pod exists), `ignored_delete` on
  `podTerminate` (answered, nothing deleted).
- A key is bad when it is not 8-128 characters of letters, digits, `_` and `-`, or starts with
  `revoked`.

Over 600 lines as one cohesive thing: RunPod's GraphQL schema, its resolvers and the one route that
serves them, which read best together.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.language import FieldNode
from graphql.utilities import value_from_ast_untyped

from gpusupply.sandbox.common import (
    CREATE_FAULTS,
    DELETE_FAULTS,
    READ_FAULTS,
    BodyNotJson,
    FaultInjector,
    Phase,
    SandboxConfig,
    SimInstance,
    VendorSandbox,
    account_fingerprint,
    authorization_token,
    read_json,
)
from gpusupply.sandbox.inventory import SIM_GPUS, price
from gpusupply.sandbox.market import MarketWalk
from gpusupply.vendors.runpod import LIMITS, OPERATION_GROUPS

SCHEMA_SDL = """
scalar Void

enum CloudTypeEnum { ALL SECURE COMMUNITY }
enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }
enum PodType { INTERRUPTABLE RESERVED }

input GpuTypeFilter { id: String ids: [String] }
input GpuLowestPriceInput {
  gpuCount: Int! secureCloud: Boolean countryCode: String dataCenterId: String
  minMemoryInGb: Int minVcpuCount: Int minDisk: Int supportPublicIp: Boolean
}
type LowestPrice {
  gpuName: String gpuTypeId: String minimumBidPrice: Float uninterruptablePrice: Float
  minMemory: Int minVcpu: Int stockStatus: String countryCode: String maxUnreservedGpuCount: Int
}
type GpuType {
  id: String! displayName: String manufacturer: String memoryInGb: Int cudaCores: Int
  secureCloud: Boolean communityCloud: Boolean securePrice: Float communityPrice: Float
  oneMonthPrice: Float threeMonthPrice: Float oneWeekPrice: Float
  communitySpotPrice: Float secureSpotPrice: Float
  maxGpuCount: Int maxGpuCountSecureCloud: Int maxGpuCountCommunityCloud: Int
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
}

input EnvironmentVariableInput { key: String! value: String }
input PodFindAndDeployOnDemandInput {
  name: String imageName: String gpuTypeId: String gpuCount: Int cloudType: CloudTypeEnum
  countryCode: String dataCenterId: String supportPublicIp: Boolean startSsh: Boolean startJupyter: Boolean
  ports: String containerDiskInGb: Int volumeInGb: Int volumeMountPath: String dockerArgs: String
  env: [EnvironmentVariableInput] templateId: String networkVolumeId: String minVcpuCount: Int
  minMemoryInGb: Int minDownload: Int minUpload: Int allowedCudaVersions: [String] instanceId: String
}
input PodRentInterruptableInput {
  bidPerGpu: Float! name: String imageName: String gpuTypeId: String gpuCount: Int cloudType: CloudTypeEnum
  countryCode: String dataCenterId: String supportPublicIp: Boolean startSsh: Boolean startJupyter: Boolean
  ports: String containerDiskInGb: Int volumeInGb: Int volumeMountPath: String dockerArgs: String
  env: [EnvironmentVariableInput] templateId: String networkVolumeId: String minVcpuCount: Int
  minMemoryInGb: Int minDownload: Int minUpload: Int allowedCudaVersions: [String]
}
input PodFilter { podId: String! }
input PodStopInput { podId: String! incrementVersion: Boolean }
input PodResumeInput { podId: String! gpuCount: Int! syncMachine: Boolean }
input PodTerminateInput { podId: String! }

type PodRuntimePorts { ip: String isIpPublic: Boolean privatePort: Int publicPort: Int type: String }
type PodRuntimeContainer { cpuPercent: Int memoryPercent: Int }
type PodRuntime { uptimeInSeconds: Int ports: [PodRuntimePorts] container: PodRuntimeContainer }
type PodMachineInfo { podHostId: String gpuDisplayName: String location: String secureCloud: Boolean }
type Pod {
  id: String! name: String desiredStatus: PodStatus podType: PodType imageName: String env: [String]
  machineId: String machine: PodMachineInfo gpuCount: Int vcpuCount: Float memoryInGb: Float
  containerDiskInGb: Int volumeInGb: Float volumeMountPath: String costPerHr: Float adjustedCostPerHr: Float
  uptimeSeconds: Int lastStatusChange: String port: Int ports: String dockerArgs: String dockerId: String
  runtime: PodRuntime
}
type User { id: String pods: [Pod] }

type Query {
  gpuTypes(input: GpuTypeFilter): [GpuType]
  myself: User
  pod(input: PodFilter!): Pod
}
type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput): Pod
  podRentInterruptable(input: PodRentInterruptableInput!): Pod
  podStop(input: PodStopInput!): Pod
  podResume(input: PodResumeInput!): Pod
  podTerminate(input: PodTerminateInput!): Void
}
"""

# Messages (the no-capacity one is RunPod's own; the others are inferred).
MSG_NO_CAPACITY = "There are no longer any instances available with the requested specifications. Please refresh and try again."
MSG_UNAUTHORIZED = "Unauthorized request, please check your API key."
MSG_RATE_LIMITED = "Too many requests, please slow down."
MSG_SERVER_ERROR = "Something went wrong. Please try again later or contact support."
MSG_BAD_BODY = "POST body missing, invalid Content-Type, or JSON object has no keys."
MSG_POD_NOT_FOUND = "Pod not found"
MSG_INTERRUPTED = "This pod was interrupted; resume it with a new bid (podBidResume)"

REVOKED_KEY_PREFIX = "revoked"
_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
MAX_POD_NAME = 191


@dataclass(frozen=True, slots=True)
class RunPodGpu:
    id: str  # RunPod's GPU type id ("NVIDIA H100 80GB HBM3")
    display_name: str  # what the console shows ("H100 SXM")
    memory_gb: int


# RunPod's names for the shared inventory's GPUs (keyed by the Vast spelling in SimGpu).
RUNPOD_NAMES: dict[str, RunPodGpu] = {
    "RTX 4090": RunPodGpu("NVIDIA GeForce RTX 4090", "RTX 4090", 24),
    "RTX 3090": RunPodGpu("NVIDIA GeForce RTX 3090", "RTX 3090", 24),
    "RTX 5090": RunPodGpu("NVIDIA GeForce RTX 5090", "RTX 5090", 32),
    "RTX A6000": RunPodGpu("NVIDIA RTX A6000", "RTX A6000", 48),
    "L40S": RunPodGpu("NVIDIA L40S", "L40S", 48),
    "L4": RunPodGpu("NVIDIA L4", "L4", 24),
    "A100 PCIE": RunPodGpu("NVIDIA A100 80GB PCIe", "A100 PCIe", 80),
    "A100 SXM4": RunPodGpu("NVIDIA A100-SXM4-80GB", "A100 SXM", 80),
    "H100 PCIE": RunPodGpu("NVIDIA H100 PCIe", "H100 PCIe", 80),
    "H100 SXM": RunPodGpu("NVIDIA H100 80GB HBM3", "H100 SXM", 80),
    "H200": RunPodGpu("NVIDIA H200", "H200 SXM", 141),
    "B200": RunPodGpu("NVIDIA B200", "B200", 180),
}
DATACENTER_GPUS = frozenset({"A100 PCIE", "A100 SXM4", "H100 PCIE", "H100 SXM", "H200", "B200", "L40S"})
ALWAYS_IN_STOCK = frozenset({"H100 SXM", "A100 SXM4", "A100 PCIE"})  # so that every seed offers them

# (data center id, country, cloud)
DATACENTERS: tuple[tuple[str, str, str], ...] = (
    ("US-TX-3", "US", "SECURE"), ("US-GA-1", "US", "SECURE"), ("CA-MTL-1", "CA", "SECURE"),
    ("EU-RO-1", "RO", "SECURE"), ("EU-SE-1", "SE", "SECURE"), ("AP-JP-1", "JP", "SECURE"),
    ("US-CA-2", "US", "COMMUNITY"), ("EU-CZ-1", "CZ", "COMMUNITY"), ("EUR-IS-1", "IS", "COMMUNITY"),
)


@dataclass
class Machine:
    id: str
    gpu_type_id: str
    datacenter: str
    country: str
    cloud: str
    size: int  # GPUs in the machine
    reserved: int  # GPUs rented by accounts outside the sandbox's API (never freed)


@dataclass
class GpuOffer:
    gpu: RunPodGpu
    secure_price: float | None
    community_price: float | None
    secure_spot: float | None
    community_spot: float | None

    def price(self, cloud: str) -> float | None:
        return self.secure_price if cloud == "SECURE" else self.community_price

    def spot(self, cloud: str) -> float | None:
        return self.secure_spot if cloud == "SECURE" else self.community_spot


def _pod_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(14))


def build_inventory(seed: int) -> tuple[dict[str, GpuOffer], list[Machine]]:
    """The same GPU types, prices and machines for the same seed."""
    rng = random.Random(f"runpod-inventory:{seed}")
    types: dict[str, GpuOffer] = {}
    machines: list[Machine] = []
    for sim in SIM_GPUS:
        gpu = RUNPOD_NAMES[sim.vast_name]
        datacenter_class = sim.vast_name in DATACENTER_GPUS
        secure = round(price(rng, sim) * 1.15, 2)
        community = round(secure * rng.uniform(0.7, 0.85), 2) if not datacenter_class or rng.random() < 0.4 else None
        types[gpu.id] = GpuOffer(
            gpu, secure, community, round(secure * rng.uniform(0.45, 0.6), 2),
            round(community * rng.uniform(0.45, 0.6), 2) if community is not None else None,
        )
        for dc, country, cloud in DATACENTERS:
            if (cloud == "COMMUNITY" and community is None) or rng.random() < 0.45:
                continue
            for _ in range(rng.randint(1, 3)):
                size = 8 if datacenter_class else rng.choice((2, 4, 8))
                reserved = rng.randint(0, size)
                machines.append(Machine(f"{dc.lower()}-{_pod_id(rng)[:8]}", gpu.id, dc, country, cloud, size, reserved))
        if sim.vast_name in ALWAYS_IN_STOCK:
            machines.append(Machine(f"us-tx-3-{_pod_id(rng)[:8]}", gpu.id, "US-TX-3", "US", "SECURE", 8, rng.randint(0, 4)))
    return types, machines


NO_FAULTS = FaultInjector({}, 0)  # what an on-demand pod sees: RunPod never takes one back


@dataclass
class RunPodPod(SimInstance):
    """A pod. Only interruptible pods can be preempted: on-demand pods ignore the preempt fault."""

    interruptible: bool = False
    gpu_type_id: str = ""
    machine_id: str = ""

    def phase(self, now: float, faults: FaultInjector) -> str:
        return super().phase(now, faults if self.interruptible else NO_FAULTS)


def graphql_error(message: str, code: str, *, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status, headers=headers)


class RunPodSandbox(VendorSandbox):
    name = "runpod"

    def capacity_refusal(self) -> Response:
        return graphql_error(MSG_NO_CAPACITY, "INTERNAL_SERVER_ERROR", status=200)
    rate_limits = LIMITS.routes
    preempts_only_spot = True

    def __init__(self, config: SandboxConfig | None = None):
        super().__init__(config)
        self.gpu_types, machines = build_inventory(self.config.seed)
        self.machines: dict[str, Machine] = {m.id: m for m in machines}
        # Moving prices (sandbox/market.py) scale the seeded prices; machines come and go.
        self.base_offers = {gpu_id: replace(offer) for gpu_id, offer in self.gpu_types.items()}
        self.withdrawn: set[str] = set()
        self._id_rng = random.Random(f"runpod-ids:{self.config.seed}")
        self._malformed_served = 0
        self.schema = self._build_schema()

    # ----- capacity ------------------------------------------------------------------------------
    def used_gpus(self) -> dict[str, int]:
        """GPUs our pods hold per machine: live pods, stopped ones included; preempted ones hold none."""
        used: dict[str, int] = {}
        now = self.now()
        for pod in self.instances.values():
            if isinstance(pod, RunPodPod) and not pod.is_gone(now, self.faults):
                used[pod.machine_id] = used.get(pod.machine_id, 0) + int(pod.data["gpu_count"])
        return used

    def free_machines(self, gpu_type_id: str, count: int, *, cloud: str | None, country: str | None = None,
                      datacenter: str | None = None, used: dict[str, int] | None = None) -> list[tuple[int, Machine]]:
        """(free GPUs, machine) that fit a pod of `count` GPUs, most free first (ties by id)."""
        used = self.used_gpus() if used is None else used
        fits = [
            (m.size - m.reserved - used.get(m.id, 0), m)
            for m in self.machines.values()
            if m.gpu_type_id == gpu_type_id
            and m.id not in self.withdrawn
            and (cloud is None or m.cloud == cloud)
            and (country is None or m.country == country)
            and (datacenter is None or m.datacenter == datacenter)
        ]
        return sorted(((free, m) for free, m in fits if free >= count), key=lambda fm: (-fm[0], fm[1].id))

    def max_count(self, gpu_type_id: str, cloud: str | None) -> int:
        sizes = [m.size for m in self.machines.values() if m.gpu_type_id == gpu_type_id and (cloud is None or m.cloud == cloud)]
        return max(sizes, default=0)

    def reprice(self, market: MarketWalk, now: float) -> None:
        def scaled(value: float | None, factor: float) -> float | None:
            return None if value is None else round(value * factor, 2)

        for gpu_id, base in self.base_offers.items():
            factor = market.factor(gpu_id, now)
            offer = self.gpu_types[gpu_id]
            offer.secure_price, offer.community_price = scaled(base.secure_price, factor), scaled(base.community_price, factor)
            offer.secure_spot, offer.community_spot = scaled(base.secure_spot, factor), scaled(base.community_spot, factor)
        self.withdrawn = {m.id for m in self.machines.values() if not market.listed(m.id, now)}

    # ----- rendering ---------------------------------------------------------------------------
    def error_response(self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None) -> Response:
        headers = {"Retry-After": f"{max(retry_after, 0.001):.3f}"} if retry_after is not None else None
        if status == 429:
            return graphql_error(message or MSG_RATE_LIMITED, "RATE_LIMITED", status=429, headers=headers)
        return graphql_error(message or MSG_SERVER_ERROR, "INTERNAL_SERVER_ERROR", status=status, headers=headers)

    def pod_json(self, pod: RunPodPod) -> dict[str, Any]:
        now = self.now()
        phase = pod.phase(now, self.faults)
        data = pod.data
        preempted = phase == Phase.PREEMPTED
        running = phase in (Phase.RUNNING, Phase.REBOOTING)
        status = {
            Phase.CREATING: "CREATED", Phase.LOADING: "RUNNING", Phase.STARTING: "RUNNING", Phase.RUNNING: "RUNNING",
            Phase.REBOOTING: "RESTARTING", Phase.STOPPING: "EXITED", Phase.STOPPED: "EXITED", Phase.PREEMPTED: "EXITED",
        }[phase]
        ports = [
            {"ip": data["public_ip"] if data["public_ip"] else "100.64.0.2", "isIpPublic": bool(data["public_ip"]),
             "privatePort": private, "publicPort": public, "type": kind}
            for private, public, kind in data["port_map"]
        ]
        machine = self.machines[pod.machine_id]
        return {
            "id": pod.id,
            "name": pod.marker,
            "desiredStatus": status,
            "podType": "INTERRUPTABLE" if pod.interruptible else "RESERVED",
            "imageName": data["image"],
            "env": [f"{key}={value}" for key, value in data["env"]],
            "machineId": pod.machine_id,
            "machine": {"podHostId": f"{pod.id}-{data['host_suffix']}", "gpuDisplayName": self.gpu_types[pod.gpu_type_id].gpu.display_name,
                        "location": machine.country, "secureCloud": machine.cloud == "SECURE"},
            "gpuCount": 0 if preempted else data["gpu_count"],
            "vcpuCount": float(data["vcpus"]),
            "memoryInGb": float(data["memory_gb"]),
            "containerDiskInGb": data["container_disk"],
            "volumeInGb": float(data["volume"]),
            "volumeMountPath": data["volume_mount_path"],
            "costPerHr": 0.0 if preempted else data["cost_per_hr"],
            "adjustedCostPerHr": 0.0 if preempted else data["cost_per_hr"],
            "uptimeSeconds": int(now - pod.running_since) if running and pod.running_since is not None else 0,
            "lastStatusChange": f"Rented by User: {datetime.fromtimestamp(pod.created_at, UTC):%a %b %d %Y %H:%M:%S} GMT+0000",
            "port": None,
            "ports": data["ports"],
            "dockerArgs": data["docker_args"],
            "dockerId": None,
            "runtime": {"uptimeInSeconds": int(now - (pod.running_since or now)), "ports": ports,
                        "container": {"cpuPercent": 0, "memoryPercent": 1}} if running else None,
        }

    def visible_pods(self, account: str) -> list[RunPodPod]:
        """Every pod of the account that is not terminated (preempted pods stay, EXITED)."""
        now = self.now()
        return [p for p in self.instances.values()
                if isinstance(p, RunPodPod) and p.account == account and p.phase(now, self.faults) != Phase.DELETED]

    def visible_pod(self, account: str, pod_id: str) -> RunPodPod | None:
        pod = self.instances.get(pod_id)
        if not isinstance(pod, RunPodPod) or pod.account != account or pod.phase(self.now(), self.faults) == Phase.DELETED:
            return None
        return pod

    # ----- resolvers ---------------------------------------------------------------------------
    def _build_schema(self) -> GraphQLSchema:
        schema = build_schema(SCHEMA_SDL)
        query, mutation = schema.query_type, schema.mutation_type
        assert query is not None and mutation is not None
        query.fields["gpuTypes"].resolve = self._gpu_types
        query.fields["myself"].resolve = lambda _root, info: {"id": f"user_{account_fingerprint(info.context['account'])}",
                                                              "pods": [self.pod_json(p) for p in self.visible_pods(info.context["account"])]}
        query.fields["pod"].resolve = self._pod
        gpu_type = schema.get_type("GpuType")
        assert isinstance(gpu_type, GraphQLObjectType)  # declared in the schema's SDL above
        gpu_type.fields["lowestPrice"].resolve = self._lowest_price
        mutation.fields["podFindAndDeployOnDemand"].resolve = lambda _r, info, input=None: self._deploy(info, input or {}, None)
        mutation.fields["podRentInterruptable"].resolve = lambda _r, info, input: self._deploy(info, input, input["bidPerGpu"])
        mutation.fields["podStop"].resolve = self._stop
        mutation.fields["podResume"].resolve = self._resume
        mutation.fields["podTerminate"].resolve = self._terminate
        return schema

    def _gpu_types(self, _root: Any, info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        wanted: set[str] | None = None
        if input and input.get("id"):
            wanted = {input["id"]}
        elif input and input.get("ids"):
            wanted = set(input["ids"])
        out = []
        for offer in self.gpu_types.values():
            if wanted is not None and offer.gpu.id not in wanted:
                continue
            secure_max, community_max = self.max_count(offer.gpu.id, "SECURE"), self.max_count(offer.gpu.id, "COMMUNITY")
            out.append({
                "id": offer.gpu.id, "displayName": offer.gpu.display_name, "manufacturer": "Nvidia",
                "memoryInGb": offer.gpu.memory_gb, "cudaCores": 0,
                "secureCloud": secure_max > 0, "communityCloud": community_max > 0 and offer.community_price is not None,
                "securePrice": offer.secure_price, "communityPrice": offer.community_price,
                "oneMonthPrice": None, "threeMonthPrice": None, "oneWeekPrice": None,
                "secureSpotPrice": offer.secure_spot, "communitySpotPrice": offer.community_spot,
                "maxGpuCount": max(secure_max, community_max), "maxGpuCountSecureCloud": secure_max,
                "maxGpuCountCommunityCloud": community_max,
            })
        return out

    def _lowest_price(self, gpu: dict[str, Any], info: Any, input: dict[str, Any] | None = None) -> dict[str, Any] | None:
        input = input or {"gpuCount": 1}
        count = int(input["gpuCount"])
        secure = input.get("secureCloud")
        clouds: tuple[str, ...] = ("SECURE",) if secure is True else ("COMMUNITY",) if secure is False else ("SECURE", "COMMUNITY")
        offer = self.gpu_types[gpu["id"]]
        clouds = tuple(c for c in clouds if offer.price(c) is not None and self.max_count(gpu["id"], c) >= count)
        if count < 1 or not clouds:
            return None
        used = info.context.setdefault("used", self.used_gpus())  # one capacity read per document
        fits = [fm for c in clouds for fm in self.free_machines(gpu["id"], count, cloud=c, country=input.get("countryCode"),
                                                                 datacenter=input.get("dataCenterId"), used=used)]
        free = sum(f for f, _ in fits)
        best = min(fits, key=lambda fm: (offer.price(fm[1].cloud) or 0.0, -fm[0], fm[1].id)) if fits else None
        cloud = best[1].cloud if best else clouds[0]
        return {
            "gpuName": offer.gpu.display_name, "gpuTypeId": offer.gpu.id,
            "minimumBidPrice": offer.spot(cloud), "uninterruptablePrice": offer.price(cloud),
            "minMemory": 31 * count, "minVcpu": 8 * count,
            "stockStatus": None if not fits else "High" if free >= 16 else "Medium" if free >= 4 else "Low",
            "countryCode": best[1].country if best else None,
            "maxUnreservedGpuCount": max((f for f, _ in fits), default=0),
        }

    def _pod(self, _root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
        if info.context.get("fault") == "phantom_404":
            return None  # "not found" although the pod exists (the list still shows it)
        pod = self.visible_pod(info.context["account"], input["podId"])
        return self.pod_json(pod) if pod is not None else None

    def _deploy(self, info: Any, spec: dict[str, Any], bid: float | None) -> dict[str, Any]:
        account = info.context["account"]
        gpu_type_id = spec.get("gpuTypeId")
        if not gpu_type_id:
            raise GraphQLError("gpuTypeId is required for a GPU pod", extensions={"code": "BAD_USER_INPUT"})
        offer = self.gpu_types.get(gpu_type_id)
        if offer is None:
            raise GraphQLError(f"Invalid GPU type: {gpu_type_id}", extensions={"code": "BAD_USER_INPUT"})
        if not spec.get("imageName") and not spec.get("templateId"):
            raise GraphQLError("imageName or templateId is required", extensions={"code": "BAD_USER_INPUT"})
        name = spec.get("name") or ""
        if len(name) > MAX_POD_NAME:
            raise GraphQLError(f"name must be at most {MAX_POD_NAME} characters", extensions={"code": "BAD_USER_INPUT"})
        count = spec.get("gpuCount") or 1
        if count < 1:
            raise GraphQLError("gpuCount must be at least 1", extensions={"code": "BAD_USER_INPUT"})
        cloud = spec.get("cloudType") or "ALL"
        clouds: tuple[str, ...] = ("SECURE", "COMMUNITY") if cloud == "ALL" else (cloud,)
        clouds = tuple(c for c in clouds if offer.price(c) is not None)
        if bid is not None:
            floor = min((offer.spot(c) or 0.0 for c in clouds), default=0.0)
            if bid < floor:
                raise GraphQLError(f"Your bid of ${bid:.3f}/GPU is below the minimum bid of ${floor:.3f}/GPU for this GPU type",
                                   extensions={"code": "BAD_USER_INPUT"})
        fits = [fm for c in clouds for fm in self.free_machines(gpu_type_id, count, cloud=c, country=spec.get("countryCode"),
                                                                 datacenter=spec.get("dataCenterId"))]
        if not fits:
            raise GraphQLError(MSG_NO_CAPACITY, extensions={"code": "INTERNAL_SERVER_ERROR"})
        _, machine = min(fits, key=lambda fm: (offer.price(fm[1].cloud) or 0.0, -fm[0], fm[1].id))
        pod = self.new_pod(account, spec, offer, machine, count, bid)
        self.record_create(pod, gpu_type_id=gpu_type_id, gpu_count=count, interruptible=bid is not None, machine_id=machine.id)
        info.context["created"] = pod.id
        return self.pod_json(pod)

    def new_pod(self, account: str, spec: dict[str, Any], offer: GpuOffer, machine: Machine, count: int, bid: float | None) -> RunPodPod:
        seq = self.next_seq()
        port_map = []
        public_ip = f"{('203.0.113', '198.51.100', '192.0.2')[seq % 3]}.{seq % 250 + 2}" if spec.get("supportPublicIp", True) else ""
        for n, item in enumerate(p for p in (spec.get("ports") or "").split(",") if p.strip()):
            private, _, kind = item.strip().partition("/")
            if private.isdigit() and kind in ("tcp", "http"):
                public = 10000 + (seq * 7 + n) % 50000 if kind == "tcp" else int(private)
                port_map.append((int(private), public, "tcp" if kind == "tcp" else "http"))
        per_gpu = bid if bid is not None else offer.price(machine.cloud) or 0.0
        env = [(e["key"], e.get("value") or "") for e in spec.get("env") or []]
        data = {
            "gpu_count": count, "image": spec.get("imageName") or "runpod/base", "env": env, "ports": spec.get("ports") or "",
            "port_map": port_map, "public_ip": public_ip, "host_suffix": f"{self._id_rng.getrandbits(32):08x}",
            "vcpus": max(spec.get("minVcpuCount") or 0, 8 * count), "memory_gb": max(spec.get("minMemoryInGb") or 0, 31 * count),
            "container_disk": spec.get("containerDiskInGb") or 10, "volume": spec.get("volumeInGb") or 0,
            "volume_mount_path": spec.get("volumeMountPath") or "/workspace", "docker_args": spec.get("dockerArgs") or "",
            "cost_per_hr": round(per_gpu * count, 4),
        }
        return RunPodPod(_pod_id(self._id_rng), account, self.now(), self.config.ready_after, marker=spec.get("name"), data=data,
                         interruptible=bid is not None, gpu_type_id=offer.gpu.id, machine_id=machine.id)

    def _own(self, info: Any, pod_id: str) -> RunPodPod:
        pod = self.visible_pod(info.context["account"], pod_id)
        if pod is None:
            raise GraphQLError(MSG_POD_NOT_FOUND, extensions={"code": "NOT_FOUND"})
        return pod

    def _stop(self, _root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self._own(info, input["podId"])
        now = self.now()
        phase = pod.phase(now, self.faults)
        if phase not in (Phase.STOPPING, Phase.STOPPED, Phase.PREEMPTED):  # stopping twice is no error
            pod.stopped_at = now
        return {"id": pod.id, "desiredStatus": "EXITED"}

    def _resume(self, _root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self._own(info, input["podId"])
        now = self.now()
        phase = pod.phase(now, self.faults)
        if phase == Phase.PREEMPTED:
            raise GraphQLError(MSG_INTERRUPTED, extensions={"code": "BAD_USER_INPUT"})
        if input["gpuCount"] < 1:
            raise GraphQLError("gpuCount must be at least 1", extensions={"code": "BAD_USER_INPUT"})
        if phase in (Phase.STOPPING, Phase.STOPPED):
            pod.stopped_at = None
            pod.start_requested_at = now
            pod.running_since = now
        return {"id": pod.id, "desiredStatus": "RUNNING", "imageName": pod.data["image"],
                "env": [f"{k}={v}" for k, v in pod.data["env"]], "machineId": pod.machine_id,
                "machine": {"podHostId": f"{pod.id}-{pod.data['host_suffix']}"}}

    def _terminate(self, _root: Any, info: Any, input: dict[str, Any]) -> None:
        pod = self._own(info, input["podId"])
        if info.context.get("fault") != "ignored_delete":  # acknowledged, but nothing deleted
            self.record_delete(pod)
        return None

    # ----- HTTP ----------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> str | Response:
        """`Authorization: Bearer <key>` or `?api_key=`; a malformed or revoked key is refused (401)."""
        key = authorization_token(request) or request.query_params.get("api_key", "")
        if not _KEY.match(key) or key.startswith(REVOKED_KEY_PREFIX):
            return graphql_error(MSG_UNAUTHORIZED, "UNAUTHENTICATED", status=401)
        return key

    def answer(self, body: dict[str, Any], fault: str | None) -> Response:
        """The real answer, or, when the gate drew "malformed", one of: a truncated body, a list
        that is an object, a pod without its id (or `data` null without errors)."""
        if fault != "malformed":
            return JSONResponse(body)
        variant = self._malformed_served % 3
        self._malformed_served += 1
        data = body.get("data") or {}
        if variant == 0:
            text = json.dumps(body)
            return Response(text[: max(len(text) // 2, 1)], media_type="application/json")
        if variant == 1:
            if "gpuTypes" in data:
                return JSONResponse({"data": {"gpuTypes": {"items": data["gpuTypes"]}}})
            return JSONResponse({"data": {"myself": {"pods": {"items": (data.get("myself") or {}).get("pods")}}}})
        pods = (data.get("myself") or {}).get("pods")
        if pods:
            broken = [{k: v for k, v in pods[0].items() if k != "id"}, *pods[1:]]
            return JSONResponse({"data": {"myself": {"pods": broken}}})
        return JSONResponse({"data": None})

    def create_app(self) -> FastAPI:
        app = super().create_app()

        @app.post("/graphql")
        async def graphql_endpoint(request: Request) -> Response:
            account = self.authenticate(request)
            if isinstance(account, Response):
                return account
            try:
                payload = await read_json(request)
            except BodyNotJson:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
                return graphql_error(MSG_BAD_BODY, "BAD_REQUEST", status=400)
            variables = payload.get("variables") or {}
            if not isinstance(variables, dict):
                return graphql_error("variables must be an object", "BAD_REQUEST", status=400)
            try:
                document = parse(payload["query"])
            except GraphQLError as exc:
                return JSONResponse({"errors": [{**exc.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}, status_code=400)
            errors = validate(self.schema, document)
            if errors:
                return JSONResponse({"errors": [{**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for e in errors]},
                                    status_code=400)
            field = root_field(document, payload.get("operationName"))
            group = OPERATION_GROUPS.get(field.name.value, "other") if field is not None else "other"
            extra = FAULTS_BY_FIELD.get(field.name.value if field is not None else "", ())
            pod_id = root_pod_id(field, variables) if extra in (READ_FAULTS, DELETE_FAULTS) else None
            # Authenticated above, before the body was read: the gate follows, as for every vendor.
            gate = await self.before_call(account, group, extra, instance_id=pod_id)
            if gate.response is not None:
                return gate.response
            context: dict[str, Any] = {"account": account, "fault": gate.fault}
            result = execute(self.schema, document, variable_values=variables, context_value=context,
                             operation_name=payload.get("operationName"))
            if gate.fault == "lost" and context.get("created"):
                return await self.lost_response()
            assert isinstance(result, ExecutionResult)  # the schema's resolvers are synchronous
            body: dict[str, Any] = {"data": result.data}
            if result.errors:
                body["errors"] = [e.formatted for e in result.errors]
            return self.answer(body, gate.fault)

        return app


# The faults a call can take besides the generic ones, by the document's first root field.
FAULTS_BY_FIELD: dict[str, tuple[str, ...]] = {
    "podFindAndDeployOnDemand": CREATE_FAULTS,
    "podRentInterruptable": CREATE_FAULTS,
    "myself": ("malformed",),
    "gpuTypes": ("malformed",),
    "pod": READ_FAULTS,
    "podTerminate": DELETE_FAULTS,
}


def root_field(document: Any, operation_name: str | None) -> FieldNode | None:
    """The first root field of the document's operation (the one named, else the first)."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (operation_name is None or (definition.name and definition.name.value == operation_name)):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    return selection
    return None


def operation_group(document: Any, operation_name: str | None) -> str:
    """The rate-limit group of a document: that of its operation's first root field."""
    field = root_field(document, operation_name)
    return OPERATION_GROUPS.get(field.name.value, "other") if field is not None else "other"


def root_pod_id(field: FieldNode | None, variables: dict[str, Any]) -> str | None:
    """`input.podId` of a root field, inline or from the variables (aimed faults name a pod)."""
    for argument in (field.arguments or ()) if field is not None else ():
        if argument.name.value == "input":
            value = value_from_ast_untyped(argument.value, variables)
            pod_id = value.get("podId") if isinstance(value, dict) else None
            return str(pod_id) if pod_id is not None else None
    return None

