"""Lambda Cloud API v1, simulated: instance types, launch, instances, restart, terminate, SSH keys.

Faithful to Lambda's OpenAPI document 1.8.3 (reference/openapi/lambda-cloud-1.8.3.json; every
answer, success or error, validates against it: tests/sandbox/test_lambdalabs_openapi.py):
everything under `/api/v1`; `Authorization: Bearer <key>` or Basic (`<key>:` base64-encoded, or
the bare key); `{"data": ...}` on success and `{"error": {"code", "message", "suggestion"}}` on
failure; instance types with `regions_with_capacity_available`; a launch that takes exactly one
SSH key by name and answers `instance_ids`; restart and terminate by id lists; statuses booting,
active, unhealthy, terminating, terminated, preempted; 1 request/s per key and 1 launch per 12 s.

Inferred where the document says nothing (docs/vendors/lambda.md says so):
- Capacity is a number of instances per (instance type, region), drawn from the seed; a launch
  takes one, a terminate gives it back; a region at 0 leaves `regions_with_capacity_available`
  and a launch there answers `instance-operations/launch/insufficient-capacity` (400).
- A 429 (not in the document) carries the error envelope, code `global/rate-limit-exceeded`, and
  `Retry-After`; a 500 is `global/internal-error` (ApiErrorInternal), a 502/503/504 is
  `provider/internal-unavailable`, the document's example of an upstream error.
- Terminated instances leave `GET /instances` at once (and answer 404); the terminate answer
  shows them `terminating`. A preempted instance stays listed as `preempted` until terminated.
- A restart shows the instance `booting` for a second, then `active` again.
- At most `instance_quota` live instances per account (default 100): more is `global/quota-exceeded`.
- Launch accepts no file systems (none exist here): a named one is `global/object-does-not-exist`.
- Faults (sandbox/common.py): `lost` and `late_create` on launch, `phantom_404` on
  `GET /instances/{id}`, `ignored_delete` on terminate (answered, nothing terminated), `malformed`
  on the lists, `preempt` on running instances.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpusupply.sandbox.common import (
    CREATE_FAULTS,
    DELETE_FAULTS,
    READ_FAULTS,
    BodyNotJson,
    Call,
    Phase,
    SandboxConfig,
    SimInstance,
    VendorSandbox,
    is_ssh_public_key,
    read_json,
)
from gpusupply.sandbox.market import MarketWalk
from gpusupply.vendors.lambdalabs import LIMITS

API_PREFIX = "/api/v1"

# Documented limits per key (vendors/lambdalabs.LIMITS): the whole API about 1 request/s, launch 1
# per 12 s ("or five per minute"). "api" applies to every route, "launch" to launch as well.
assert LIMITS.key is not None  # Lambda limits the key as a whole
DEFAULT_RATE_LIMITS: dict[str, tuple[float, float]] = {"api": LIMITS.key, "launch": LIMITS.routes["launch"]}

DEFAULT_INSTANCE_QUOTA = 100
MAX_NAME = 64
MAX_SSH_KEY_NAME = 64
MAX_PUBLIC_KEY = 4096

# PublicRegionCode, the document's enum of region names.
PUBLIC_REGIONS = (
    "europe-central-1", "asia-south-1", "australia-east-1", "me-west-1", "asia-northeast-1", "asia-northeast-2",
    "us-east-1", "us-west-2", "us-west-1", "us-south-1", "us-west-3", "us-midwest-1", "us-east-2", "us-south-2",
    "us-south-3", "us-east-3", "us-midwest-2",
)
# The regions this sandbox has hardware in, with Lambda's descriptions.
REGIONS: dict[str, str] = {
    "us-west-1": "California, USA",
    "us-west-2": "Arizona, USA",
    "us-west-3": "Utah, USA",
    "us-south-1": "Texas, USA",
    "us-east-1": "Virginia, USA",
    "us-midwest-1": "Illinois, USA",
    "europe-central-1": "Germany",
    "asia-south-1": "India",
    "asia-northeast-1": "Tokyo, Japan",
    "australia-east-1": "Australia",
    "me-west-1": "Israel",
}


@dataclass(frozen=True, slots=True)
class InstanceTypeSpec:
    name: str
    gpu_description: str
    price_cents_per_hour: int  # for the whole instance, as Lambda lists it
    vcpus: int
    memory_gib: int
    storage_gib: int
    gpus: int

    @property
    def description(self) -> str:
        return f"{self.gpus}x {self.gpu_description}"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "gpu_description": self.gpu_description,
            "price_cents_per_hour": self.price_cents_per_hour,
            "specs": {"vcpus": self.vcpus, "memory_gib": self.memory_gib, "storage_gib": self.storage_gib, "gpus": self.gpus},
        }


# Lambda's public catalog (names, GPUs, specs and list prices as published in 2025-2026).
INSTANCE_TYPES: tuple[InstanceTypeSpec, ...] = (
    InstanceTypeSpec("gpu_1x_gh200", "GH200 (96 GB)", 149, 64, 432, 4096, 1),
    InstanceTypeSpec("gpu_1x_h100_pcie", "H100 (80 GB PCIe)", 249, 26, 200, 1024, 1),
    InstanceTypeSpec("gpu_1x_h100_sxm5", "H100 (80 GB SXM5)", 329, 26, 225, 2816, 1),
    InstanceTypeSpec("gpu_2x_h100_sxm5", "H100 (80 GB SXM5)", 638, 52, 450, 5632, 2),
    InstanceTypeSpec("gpu_4x_h100_sxm5", "H100 (80 GB SXM5)", 1236, 104, 900, 11264, 4),
    InstanceTypeSpec("gpu_8x_h100_sxm5", "H100 (80 GB SXM5)", 2392, 208, 1800, 22528, 8),
    InstanceTypeSpec("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)", 129, 30, 200, 512, 1),
    InstanceTypeSpec("gpu_8x_a100", "A100 (40 GB SXM4)", 1032, 124, 1800, 6144, 8),
    InstanceTypeSpec("gpu_8x_a100_80gb_sxm4", "A100 (80 GB SXM4)", 1432, 240, 1800, 19968, 8),
    InstanceTypeSpec("gpu_1x_a10", "A10 (24 GB PCIe)", 75, 30, 200, 1400, 1),
    InstanceTypeSpec("gpu_1x_a6000", "A6000 (48 GB)", 80, 14, 100, 512, 1),
    InstanceTypeSpec("gpu_2x_a6000", "A6000 (48 GB)", 160, 28, 200, 1024, 2),
    InstanceTypeSpec("gpu_8x_b200_sxm6", "B200 (180 GB SXM6)", 3992, 208, 2900, 22528, 8),
    InstanceTypeSpec("gpu_8x_v100", "Tesla V100 (16 GB)", 440, 88, 448, 5800, 8),
)
# Always offered somewhere (so every seed has H100 and A100 offers), and never (a sold-out type).
ALWAYS_OFFERED = ("gpu_1x_h100_sxm5", "gpu_1x_a100_sxm4")
NEVER_OFFERED = ("gpu_8x_v100",)

# Error bodies: codes and default messages/suggestions from the document's ApiError* schemas.
ERR_UNAUTHORIZED = ("global/invalid-api-key", "API key was invalid, expired, or deleted.", "Check your API key or create a new one, then try again.")
ERR_INSTANCE_NOT_FOUND = ("global/object-does-not-exist", "Specified instance does not exist.", None)
ERR_CAPACITY = ("instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", None)
ERR_QUOTA = ("global/quota-exceeded", "Quota exceeded.", "Contact Support to increase your quota.")
ERR_INTERNAL = ("global/internal-error", "An internal server error occurred.", "Try again later. Contact Support if the problem persists.")
ERR_PROVIDER = ("provider/internal-unavailable", "Provider unavailable", "Try again shortly")
ERR_RATE_LIMITED = ("global/rate-limit-exceeded", "Too many requests.", "Slow down and try again later.")
INVALID_PARAMETERS = "global/invalid-parameters"
DOES_NOT_EXIST = "global/object-does-not-exist"

STATUS_BY_PHASE = {
    Phase.CREATING: "booting",
    Phase.LOADING: "booting",
    Phase.RUNNING: "active",
    Phase.REBOOTING: "booting",
    Phase.PREEMPTED: "preempted",
    Phase.DELETED: "terminated",
}
ADDRESSED_PHASES = frozenset({Phase.RUNNING, Phase.REBOOTING})



@dataclass
class SshKey:
    id: str
    name: str
    public_key: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "public_key": self.public_key}


def build_capacity(seed: int) -> dict[tuple[str, str], int]:
    """Instances available per (type, region) for a seed: each type in 0-4 regions."""
    rng = random.Random(f"lambda-capacity:{seed}")
    regions = list(REGIONS)
    capacity: dict[tuple[str, str], int] = {}
    for spec in INSTANCE_TYPES:
        if spec.name in NEVER_OFFERED:
            continue
        chosen = rng.sample(regions, k=rng.randint(1 if spec.name in ALWAYS_OFFERED else 0, 4))
        if spec.name in ALWAYS_OFFERED and not any(r.startswith("us-") for r in chosen):
            chosen.append(rng.choice([r for r in regions if r.startswith("us-")]))
        for region in chosen:
            capacity[(spec.name, region)] = rng.choice((2, 3, 4, 6, 10, 16)) if spec.name in ALWAYS_OFFERED else rng.choice((1, 2, 3, 4, 6, 10))
    return capacity


def error_body(code: str, message: str, suggestion: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if suggestion is not None:
        error["suggestion"] = suggestion
    return {"error": error}


def failed(status: int, error: tuple[str, str, str | None], *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(*error), status_code=status, headers=headers)


def invalid(message: str) -> JSONResponse:
    return failed(400, (INVALID_PARAMETERS, message, None))


def api_key_from(header: str) -> str | None:
    """The API key of an Authorization header: `Bearer <key>`, `Basic base64(<key>:)` or
    `Basic <key>` (both Basic forms are documented)."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not token:
        return None
    if scheme.lower() == "bearer":
        return token
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return token  # `Basic <api_key>`
    key, sep, password = decoded.partition(":")
    return key if sep and key and not password else (token if not sep else None)


class LambdaSandbox(VendorSandbox):
    name = "lambda"

    def capacity_refusal(self) -> Response:
        return failed(400, ERR_CAPACITY)
    rate_limits = DEFAULT_RATE_LIMITS
    key_bucket = "api"  # the key's limit, on every route; launch has its own besides

    def __init__(self, config: SandboxConfig | None = None):
        super().__init__(config)
        self.types: dict[str, InstanceTypeSpec] = {t.name: t for t in INSTANCE_TYPES}
        self.capacity = build_capacity(self.config.seed)
        self.withdrawn: set[tuple[str, str]] = set()  # (type, region) off the market for now (moving prices)
        self.ssh_keys: dict[str, list[SshKey]] = {}  # account -> keys
        self.instance_quota = DEFAULT_INSTANCE_QUOTA
        self._id_rng = random.Random(f"lambda-ids:{self.config.seed}")
        self._malformed_served = 0

    def reprice(self, market: MarketWalk, now: float) -> None:
        # Lambda lists one price per type (every region alike); capacity comes and goes per region.
        self.types = {
            spec.name: replace(spec, price_cents_per_hour=max(1, round(spec.price_cents_per_hour * market.factor(spec.gpu_description, now))))
            for spec in INSTANCE_TYPES
        }
        self.withdrawn = {key for key in self.capacity if not market.listed(f"{key[0]}:{key[1]}", now)}

    # ----- rendering ---------------------------------------------------------------------------
    def error_response(self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None) -> Response:
        headers = {"Retry-After": f"{max(retry_after, 0.001):.3f}"} if retry_after is not None else None
        if status == 429:
            return failed(429, ERR_RATE_LIMITED, headers=headers)
        return failed(status, ERR_INTERNAL if status == 500 else ERR_PROVIDER, headers=headers)

    def authenticate(self, request: Request) -> str | Response:
        account = api_key_from(request.headers.get("Authorization", ""))
        return account if account is not None else failed(401, ERR_UNAUTHORIZED)

    def route_error(self, status: int, detail: str) -> Response:
        if status == 404:
            return failed(404, (DOES_NOT_EXIST, "Not found.", "Check the URL of the request."))
        return invalid(detail)

    def answer(self, body: dict[str, Any], fault: str | None) -> Response:
        """The real answer, or a malformed one when the gate drew "malformed" (cycling through a
        truncated body, the wrong shape of `data`, and an HTML error page under 200)."""
        if fault != "malformed":
            return JSONResponse(body)
        variant = self._malformed_served % 3
        self._malformed_served += 1
        text = json.dumps(body)
        if variant == 0:
            return Response(text[: max(len(text) // 2, 1)], media_type="application/json")
        if variant == 1:
            data = body.get("data")
            return JSONResponse({"data": list(data.values()) if isinstance(data, dict) else {"items": data}})
        return Response("<html><body>upstream error</body></html>", media_type="text/html")

    def instance_json(self, inst: SimInstance, *, status: str | None = None) -> dict[str, Any]:
        data = inst.data
        phase = inst.phase(self.now(), self.faults)
        spec = self.types[data["instance_type"]]
        launched = phase in ADDRESSED_PHASES
        body: dict[str, Any] = {
            "id": inst.id,
            "name": inst.marker or "",
            "status": status or STATUS_BY_PHASE.get(phase, "active"),
            "ssh_key_names": [data["ssh_key_name"]],
            "file_system_names": [],
            "file_system_mounts": [],
            "region": {"name": data["region"], "description": REGIONS[data["region"]]},
            "instance_type": spec.as_json(),
            "hostname": data["hostname"],
            "jupyter_token": data["jupyter_token"],
            "actions": self.actions(phase),
            "tags": [],
            "firewall_rulesets": [],
        }
        if launched:
            body["ip"] = data["ip"]
            body["private_ip"] = data["private_ip"]
            body["jupyter_url"] = f"https://jupyter-{inst.id}.lambdaspaces.com/?token={data['jupyter_token']}"
        return body

    @staticmethod
    def actions(phase: str) -> dict[str, Any]:
        if phase in (Phase.CREATING, Phase.LOADING):
            no = {"available": False, "reason_code": "vm-has-not-launched", "reason_description": "The instance has not launched yet."}
            return {"migrate": no, "rebuild": no, "restart": no, "cold_reboot": no, "terminate": {"available": True}}
        if phase == Phase.PREEMPTED:
            no = {"available": False, "reason_code": "vm-is-terminating", "reason_description": "The instance was preempted."}
            return {"migrate": no, "rebuild": no, "restart": no, "cold_reboot": no, "terminate": {"available": True}}
        yes = {"available": True}
        return {"migrate": {"available": False, "reason_code": "vm-is-too-old", "reason_description": "Migration is not offered."},
                "rebuild": yes, "restart": yes, "cold_reboot": yes, "terminate": yes}

    def visible_instances(self, account: str) -> list[SimInstance]:
        """What `GET /instances` lists: every instance not terminated (preempted ones included)."""
        now = self.now()
        return [i for i in self.instances.values() if i.account == account and i.phase(now, self.faults) != Phase.DELETED]

    def visible_instance(self, account: str, instance_id: str) -> SimInstance | None:
        inst = self.instances.get(instance_id)
        if inst is None or inst.account != account or inst.phase(self.now(), self.faults) == Phase.DELETED:
            return None
        return inst

    def regions_with_capacity(self, type_name: str) -> list[dict[str, str]]:
        return [
            {"name": region, "description": REGIONS[region]}
            for region in REGIONS
            if self.capacity.get((type_name, region), 0) > 0 and (type_name, region) not in self.withdrawn
        ]

    # ----- routes ------------------------------------------------------------------------------
    def create_app(self) -> FastAPI:
        app = super().create_app()

        async def json_body(request: Request) -> dict[str, Any] | None:
            try:
                body = await read_json(request)
            except BodyNotJson:
                return None
            return body if isinstance(body, dict) else None

        @app.get(API_PREFIX + "/instance-types")
        async def instance_types(request: Request) -> Response:
            call = await self.open_call(request, "instance_types", ("malformed",))
            if not isinstance(call, Call):
                return call
            data = {
                spec.name: {"instance_type": spec.as_json(), "regions_with_capacity_available": self.regions_with_capacity(spec.name)}
                for spec in self.types.values()
            }
            return self.answer({"data": data}, call.fault)

        @app.post(API_PREFIX + "/instance-operations/launch")
        async def launch(request: Request) -> Response:
            body = await json_body(request)  # read first: a late launch outlives its client's connection
            call = await self.open_call(request, "launch", CREATE_FAULTS)
            if not isinstance(call, Call):
                return call
            account = call.account
            if body is None:
                return invalid("Invalid request data: the body is not a JSON object.")
            region, type_name, keys = body.get("region_name"), body.get("instance_type_name"), body.get("ssh_key_names")
            name, user_data = body.get("name", ""), body.get("user_data")
            if region not in PUBLIC_REGIONS:
                return invalid("Invalid request data: region_name is not a region.")
            if not isinstance(type_name, str) or not type_name:
                return invalid("Invalid request data: instance_type_name is required.")
            if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], str):
                return invalid("Invalid request data: ssh_key_names must hold exactly one SSH key name.")
            if not isinstance(name, str) or len(name) > MAX_NAME:
                return invalid(f"Invalid request data: name must be a string of at most {MAX_NAME} characters.")
            if user_data is not None and not isinstance(user_data, str):
                return invalid("Invalid request data: user_data must be a string.")
            if body.get("quantity", 1) != 1:
                return invalid("Invalid request data: quantity must be 1.")
            file_systems = body.get("file_system_names", [])
            if not isinstance(file_systems, list):
                return invalid("Invalid request data: file_system_names must be a list.")
            spec = self.types.get(type_name)
            if spec is None:
                return failed(404, (DOES_NOT_EXIST, f"Instance type {type_name!r} does not exist.", "Choose an instance type from GET /instance-types."))
            key = next((k for k in self.ssh_keys.get(account, []) if k.name == keys[0]), None)
            if key is None:
                return failed(404, (DOES_NOT_EXIST, f"SSH key {keys[0]!r} does not exist.", "Add the SSH key first, or check its name."))
            if file_systems:
                return failed(404, (DOES_NOT_EXIST, f"File system {file_systems[0]!r} does not exist.", "Check the file system's name."))
            if self.capacity.get((type_name, region), 0) <= 0 or (type_name, region) in self.withdrawn:
                return failed(400, ERR_CAPACITY)
            if len([i for i in self.visible_instances(account) if i.phase(self.now(), self.faults) != Phase.PREEMPTED]) >= self.instance_quota:
                return failed(400, ERR_QUOTA)
            self.capacity[(type_name, region)] -= 1
            instance = self.new_instance(account, name, spec, region, key, user_data)
            self.record_create(instance, instance_type=type_name, region=region, ssh_key_name=key.name, user_data=user_data)
            if call.fault == "lost":
                return await self.lost_response()
            return JSONResponse({"data": {"instance_ids": [instance.id]}})

        @app.get(API_PREFIX + "/instances")
        async def list_instances(request: Request) -> Response:
            call = await self.open_call(request, "list", ("malformed",))
            if not isinstance(call, Call):
                return call
            account = call.account
            cluster = request.query_params.get("cluster_id")
            rows = [] if cluster else [self.instance_json(i) for i in self.visible_instances(account)]
            return self.answer({"data": rows}, call.fault)

        @app.get(API_PREFIX + "/instances/{instance_id}")
        async def get_instance(request: Request, instance_id: str) -> Response:
            call = await self.open_call(request, "get", READ_FAULTS, instance_id=instance_id)
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = None if call.fault == "phantom_404" else self.visible_instance(account, instance_id)
            if inst is None:
                return failed(404, ERR_INSTANCE_NOT_FOUND)
            return JSONResponse({"data": self.instance_json(inst)})

        @app.post(API_PREFIX + "/instances/{instance_id}")
        async def update_instance(request: Request, instance_id: str) -> Response:
            call = await self.open_call(request, "update")
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = self.visible_instance(account, instance_id)
            if inst is None:
                return failed(404, ERR_INSTANCE_NOT_FOUND)
            body = await json_body(request)
            name = body.get("name") if body is not None else None
            if not isinstance(name, str) or len(name) > MAX_NAME:
                return invalid(f"Invalid request data: name must be a string of at most {MAX_NAME} characters.")
            inst.marker = name
            return JSONResponse({"data": self.instance_json(inst)})

        async def by_ids(request: Request, endpoint: str, extra: tuple[str, ...] = ()) -> tuple[list[SimInstance], Call | Response]:
            body = await json_body(request)
            ids = body.get("instance_ids") if body is not None else None
            single = ids[0] if isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str) else None
            call = await self.open_call(request, endpoint, extra, instance_id=single)
            if not isinstance(call, Call):
                return [], call
            account = call.account
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                # The document lists no 400 here: an empty or missing list names no instance.
                return [], failed(404, ERR_INSTANCE_NOT_FOUND)
            found = [self.visible_instance(account, i) for i in dict.fromkeys(ids)]
            if any(i is None for i in found):
                return [], failed(404, ERR_INSTANCE_NOT_FOUND)  # all or nothing
            return [i for i in found if i is not None], call

        @app.post(API_PREFIX + "/instance-operations/restart")
        async def restart(request: Request) -> Response:
            found, call = await by_ids(request, "restart")
            if not isinstance(call, Call):
                return call
            now = self.now()
            for inst in found:
                if inst.phase(now, self.faults) != Phase.PREEMPTED:
                    inst.reboot_requested_at = now
            return JSONResponse({"data": {"restarted_instances": [self.instance_json(i) for i in found]}})

        @app.post(API_PREFIX + "/instance-operations/terminate")
        async def terminate(request: Request) -> Response:
            found, call = await by_ids(request, "terminate", DELETE_FAULTS)
            if not isinstance(call, Call):
                return call
            shown = [self.instance_json(i, status="terminating") for i in found]
            if call.fault == "ignored_delete":
                return JSONResponse({"data": {"terminated_instances": shown}})  # acknowledged, nothing done
            for inst in found:
                self.record_delete(inst)
                key = (inst.data["instance_type"], inst.data["region"])
                self.capacity[key] = self.capacity.get(key, 0) + 1
            return JSONResponse({"data": {"terminated_instances": shown}})

        @app.get(API_PREFIX + "/ssh-keys")
        async def list_ssh_keys(request: Request) -> Response:
            call = await self.open_call(request, "ssh_keys", ("malformed",))
            if not isinstance(call, Call):
                return call
            account = call.account
            return self.answer({"data": [k.as_json() for k in self.ssh_keys.get(account, [])]}, call.fault)

        @app.post(API_PREFIX + "/ssh-keys")
        async def add_ssh_key(request: Request) -> Response:
            call = await self.open_call(request, "ssh_keys", ("lost",))
            if not isinstance(call, Call):
                return call
            account = call.account
            body = await json_body(request)
            if body is None:
                return invalid("Invalid request data: the body is not a JSON object.")
            name, public_key = body.get("name"), body.get("public_key")
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_SSH_KEY_NAME:
                return invalid(f"Invalid request data: name must be 1 to {MAX_SSH_KEY_NAME} characters.")
            if public_key is None:
                return invalid("Invalid request data: this sandbox does not generate key pairs; send public_key.")
            if not isinstance(public_key, str) or len(public_key) > MAX_PUBLIC_KEY or not is_ssh_public_key(public_key):
                return invalid("Invalid request data: public_key is not a valid SSH public key.")
            keys = self.ssh_keys.setdefault(account, [])
            if any(k.name == name.strip() for k in keys):
                return invalid(f"Invalid request data: an SSH key named {name.strip()!r} already exists.")
            key = SshKey(f"{self._id_rng.getrandbits(128):032x}", name.strip(), public_key.strip())
            keys.append(key)
            if call.fault == "lost":
                return await self.lost_response()
            return JSONResponse({"data": key.as_json()})

        @app.delete(API_PREFIX + "/ssh-keys/{key_id}")
        async def delete_ssh_key(request: Request, key_id: str) -> Response:
            call = await self.open_call(request, "ssh_keys")
            if not isinstance(call, Call):
                return call
            account = call.account
            keys = self.ssh_keys.get(account, [])
            key = next((k for k in keys if k.id == key_id), None)
            if key is None:
                return invalid(f"Invalid request data: no SSH key with id {key_id!r}.")  # the document lists 400, no 404
            keys.remove(key)
            return JSONResponse({"data": {}})

        return app

    # ----- lifecycle helpers -------------------------------------------------------------------
    def new_instance(self, account: str, name: str, spec: InstanceTypeSpec, region: str, key: SshKey, user_data: str | None) -> SimInstance:
        seq = self.next_seq()
        ip = f"{('203.0.113', '198.51.100', '192.0.2')[seq % 3]}.{seq % 250 + 2}"
        data = {
            "instance_type": spec.name,
            "region": region,
            "ssh_key_name": key.name,
            "ip": ip,
            "private_ip": f"10.{seq // 250 % 256}.{seq % 250}.{seq % 200 + 10}",
            "hostname": ip.replace(".", "-"),
            "jupyter_token": f"{self._id_rng.getrandbits(128):032x}",
            "user_data": user_data,
        }
        return SimInstance(f"{self._id_rng.getrandbits(128):032x}", account, self.now(), self.config.ready_after, marker=name, data=data)
