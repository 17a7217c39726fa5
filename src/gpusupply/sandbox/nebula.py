"""Nebula Block Platform API, simulated: products, images, instances, start/stop/reboot, SSH keys.

Faithful to the documented API (reference/vendor-apis.md section 3, seed 003): everything under
`/api/v1`, `Authorization: Bearer <key>`, the `{"status", "message", "data"}` envelope, products
nested by region then GPU family, images keyed by region, a create that answers no id, instance
detail as a one-element list, start/stop/reboot as GETs, deleted instances listed separately with
status "Deleted".

Inferred where Nebula documents nothing (docs/vendors/nebula.md says so):
- Errors are HTTP 4xx/5xx with `{"status": "failed", "message": ..., "data": null}`.
- Rate limits: Nebula publishes none; `DEFAULT_RATE_LIMITS` per key and route group, answered with
  429, the failed envelope and a `Retry-After` header.
- Status words besides "Running" and "Deleted": Creating, Stopping, Stopped, Starting, Rebooting.
- `limit` defaults to 100 on the instance lists, as documented for `/ssh-keys`.
- Stock is vendor-wide: a create takes one unit, a delete gives it back; 0 -> "out of stock".
- Container products expose SSH through a mapped port, `exposed_ports` = "<public>:22".

Over 600 lines as one cohesive thing: Nebula's inventory, envelopes and routes, which read best
together; the plumbing every vendor shares is in common.py.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
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
    authorization_token,
    is_ssh_public_key,
    read_json,
)
from gpusupply.sandbox.inventory import SIM_GPUS, SimGpu, price
from gpusupply.sandbox.market import MarketWalk
from gpusupply.vendors.nebula import LIMITS

API_PREFIX = "/api/v1"

# Route group -> (requests per second, burst), per API key. Nebula documents no limits: these are
# the ones the adapter assumes (vendors/nebula.LIMITS), scaled by `SandboxConfig.rate_scale`.
DEFAULT_RATE_LIMITS = LIMITS.routes

DEFAULT_PAGE_LIMIT = 100  # documented for /ssh-keys; used for the instance lists too
MAX_PAGE_LIMIT = 1000
MAX_INSTANCE_NAME = 63  # a hostname label
EST = timezone(timedelta(hours=-5), "EST")  # the docs print times as "EST 2024-11-04 10:11:50"

# Messages of the documented success answers.
MSG_PRODUCTS = "All products retrieved successfully"
MSG_IMAGES = "All OS retrieved successfully"
MSG_CREATED = "Instances created successfully"
MSG_INSTANCES = "All instances retrieved successfully"
MSG_DELETED_INSTANCES = "All deleted instances retrieved successfully"
MSG_DETAIL = "Get instance detail successfully"
MSG_DELETED = "Instances deleted successfully"
MSG_ACTIONS = {
    "start": "Instances started successfully",
    "stop": "Instances stopped successfully",
    "reboot": "Instances rebooted successfully",
}
MSG_SSH_KEYS = "SSH keys retrieved successfully"
MSG_SSH_KEY_CREATED = "SSH key created successfully"
MSG_SSH_KEY_DELETED = "SSH key deleted successfully"

# Messages of the failed answers (all inferred: Nebula documents no error bodies).
MSG_UNAUTHORIZED = "Unauthorized: missing or invalid API key"
MSG_INVALID_JSON = "Invalid JSON body"
MSG_BAD_PAGING = "limit and offset must be non-negative integers (limit at least 1)"
MSG_PRODUCT_NOT_FOUND = "Product not found"
MSG_IMAGE_NOT_FOUND = "Image not found"
MSG_DC_MISMATCH = "image_id and product_id must be from the same data center (dc_id) and region"
MSG_SSH_KEY_NOT_FOUND = "SSH key not found"
MSG_OUT_OF_STOCK = "Product is out of stock"
MSG_INSTANCE_NOT_FOUND = "Instance not found"
MSG_NOT_RUNNING = "Instance is not running"
MSG_NOT_STOPPED = "Instance is not stopped"
MSG_INVALID_SSH_KEY = "Invalid SSH public key"
MSG_RATE_LIMITED = "Too many requests, please slow down"
MSG_SERVER_ERRORS = {500: "Internal server error", 502: "Bad gateway", 503: "Service temporarily unavailable", 504: "Gateway timeout"}

# The status word a live instance shows in each lifecycle phase.
STATUS_BY_PHASE = {
    Phase.CREATING: "Creating",
    Phase.LOADING: "Creating",
    Phase.RUNNING: "Running",
    Phase.STOPPING: "Stopping",
    Phase.STOPPED: "Stopped",
    Phase.STARTING: "Starting",
    Phase.REBOOTING: "Rebooting",
    Phase.DELETED: "Deleted",
    Phase.PREEMPTED: "Deleted",
}
ADDRESSED_PHASES = frozenset({Phase.RUNNING, Phase.STOPPING, Phase.STOPPED, Phase.STARTING, Phase.REBOOTING})



@dataclass(frozen=True, slots=True)
class Datacenter:
    dc_id: int  # Nebula's id of the provider behind a product or image; one provider spans regions
    region: str
    product_type: str  # "Container" | "Virtual Machine"


DATACENTERS: tuple[Datacenter, ...] = (
    Datacenter(1, "CANADA", "Container"),
    Datacenter(2, "CANADA", "Virtual Machine"),
    Datacenter(2, "US-EAST", "Virtual Machine"),
    Datacenter(3, "US-EAST", "Virtual Machine"),
    Datacenter(2, "EU-NORTH", "Virtual Machine"),
    Datacenter(3, "APAC-SINGAPORE", "Virtual Machine"),
)

# OS images per provider; the container provider only has the plain 22.04 image.
VM_IMAGES = ("Ubuntu Server 22.04 LTS", "Ubuntu Server 22.04 LTS R535 CUDA 12.2", "Ubuntu Server 20.04 LTS (Focal Fossa)")
CONTAINER_IMAGES = ("Ubuntu Server 22.04 LTS",)


@dataclass
class Product:
    id: str
    dc: Datacenter
    gpu: SimGpu
    gpu_count: int
    price_per_hour: float  # USD for the whole product
    cpu: int
    ram: int
    disk_size: int
    ephemeral: int
    stock: int
    base_price_per_hour: float = 0.0  # the seeded price moving prices start from (sandbox/market.py)
    withdrawn: bool = False  # off the market for now (moving prices): listed with no stock

    @property
    def free(self) -> int:
        return 0 if self.withdrawn else self.stock

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dc_id": self.dc.dc_id,
            "product_type": self.dc.product_type,
            "region": self.dc.region,
            "price_per_hour": self.price_per_hour,
            "cpu": self.cpu,
            "ram": self.ram,
            "gpu": self.gpu.nebula_name,
            "gpu_type": self.gpu.nebula_family,
            "gpu_count": self.gpu_count,
            "disk_size": self.disk_size,
            "ephemeral": self.ephemeral,
            "stock": self.free,
            "cycle": "hourly",
            "is_available": self.free > 0,
        }


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    dc_id: int
    os_name: str
    region: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "dc_id": self.dc_id, "os_name": self.os_name, "os_type": "Ubuntu", "region": self.region}


@dataclass
class SshKey:
    id: int
    key_name: str
    key_data: str
    created_at: float


@dataclass
class Inventory:
    products: list[Product] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)


def _hex(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_inventory(seed: int) -> Inventory:
    """The same catalog for the same seed: products per provider and region, and their images."""
    rng = random.Random(f"nebula-inventory:{seed}")
    inventory = Inventory()
    for dc in DATACENTERS:
        container = dc.product_type == "Container"
        names = CONTAINER_IMAGES if container else VM_IMAGES
        for os_name in names:
            image_id = f"fcp{_hex(rng, 18)}" if container else f"exos{_uuid(rng)}"
            inventory.images.append(Image(image_id, dc.dc_id, os_name, dc.region))
        gpus = rng.sample(SIM_GPUS, k=rng.randint(3, 5))
        for gpu in sorted(gpus, key=lambda g: g.nebula_name):
            counts = [1] + sorted(rng.sample((2, 4, 8), k=rng.randint(0, 2)))
            per_gpu_price = price(rng, gpu)
            cpu_per_gpu = rng.choice((8, 12, 16, 24, 28))
            ram_per_gpu = rng.choice((58, 64, 96, 120, 180, 200))
            ephemeral_per_gpu = rng.choice((0, 750, 1500))
            for count in counts:
                product_id = f"fcp{_hex(rng, 20)}" if container else f"expd{_uuid(rng)}"
                inventory.products.append(
                    Product(
                        id=product_id,
                        dc=dc,
                        gpu=gpu,
                        gpu_count=count,
                        price_per_hour=round(per_gpu_price * count, 3),
                        base_price_per_hour=round(per_gpu_price * count, 3),
                        cpu=cpu_per_gpu * count,
                        ram=ram_per_gpu * count,
                        disk_size=200 if container else 100,
                        ephemeral=ephemeral_per_gpu * count,
                        stock=rng.choice((0, 1, 2, 3, 5, 8, 12, 20)),
                    )
                )
    return inventory


def envelope(message: str, data: Any = None, *, status: str = "success", include_data: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "message": message}
    if include_data:
        body["data"] = data
    body.update(extra)
    return body


def failed(status_code: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(message, None, status="failed"), status_code=status_code, headers=headers)


def est_time(epoch: float) -> str:
    return "EST " + datetime.fromtimestamp(epoch, EST).strftime("%Y-%m-%d %H:%M:%S")


def parse_paging(request: Request) -> tuple[int, int] | None:
    """(limit, offset) from the query, or None when they are not non-negative integers."""
    try:
        limit = int(request.query_params.get("limit", DEFAULT_PAGE_LIMIT))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        return None
    if limit < 1 or limit > MAX_PAGE_LIMIT or offset < 0:
        return None
    return limit, offset


class NebulaSandbox(VendorSandbox):
    name = "nebula"

    def capacity_refusal(self) -> Response:
        return failed(400, MSG_OUT_OF_STOCK)
    rate_limits = DEFAULT_RATE_LIMITS

    def __init__(self, config: SandboxConfig | None = None):
        super().__init__(config)
        inventory = build_inventory(self.config.seed)
        self.products: dict[str, Product] = {p.id: p for p in inventory.products}
        if self.config.stock is not None:
            for product in self.products.values():
                product.stock = self.config.stock
        self.images: dict[str, Image] = {i.id: i for i in inventory.images}
        self.ssh_keys: dict[str, list[SshKey]] = {}  # account -> keys
        self._id_rng = random.Random(f"nebula-ids:{self.config.seed}") if not self.config.id_base else self.id_rng()
        self._ssh_key_ids = iter(range(70, 10**9))
        self._malformed_served = 0

    def reprice(self, market: MarketWalk, now: float) -> None:
        for product in self.products.values():
            factor = market.factor(f"{product.gpu.nebula_name}:{product.dc.region}", now)
            product.price_per_hour = round(product.base_price_per_hour * factor, 3)
            product.withdrawn = not market.listed(product.id, now)

    # ----- rendering ---------------------------------------------------------------------------
    def error_response(self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None) -> Response:
        headers = {"Retry-After": f"{max(retry_after, 0.001):.3f}"} if retry_after is not None else None
        if message is None:
            message = MSG_RATE_LIMITED if status == 429 else MSG_SERVER_ERRORS.get(status, kind)
        return failed(status, message, headers=headers)

    def authenticate(self, request: Request) -> str | Response:
        account = authorization_token(request)
        return account if account is not None else failed(401, MSG_UNAUTHORIZED)

    def route_error(self, status: int, detail: str) -> Response:
        return failed(status, detail)

    def answer(self, body: dict[str, Any], fault: str | None) -> Response:
        """The real answer, or a malformed one when the gate drew "malformed" (cycling through a
        truncated body, the wrong shape of `data`, and a list shorter than its own count)."""
        if fault != "malformed":
            return JSONResponse(body)
        variant = self._malformed_served % 3
        self._malformed_served += 1
        text = json.dumps(body)
        if variant == 0:
            return Response(text[: max(len(text) // 2, 1)], media_type="application/json")
        if variant == 1:
            data = body.get("data")
            wrong = [data] if isinstance(data, dict) else {"items": data}
            return JSONResponse({**body, "data": wrong})
        if "total_instance" in body:
            return JSONResponse({**body, "data": body["data"][:-1], "total_instance": body["total_instance"] + 3})
        if "total_ssh_keys" in (body.get("data") or {}):
            data = body["data"]
            return JSONResponse({**body, "data": {**data, "ssh_keys": data["ssh_keys"][:-1], "total_ssh_keys": data["total_ssh_keys"] + 3}})
        return Response("<html><body>upstream error</body></html>", media_type="text/html")

    def instance_status(self, inst: SimInstance) -> str:
        return STATUS_BY_PHASE[inst.phase(self.now(), self.faults)]

    def instance_row(self, inst: SimInstance) -> dict[str, Any]:
        """An instance as the two list routes show it."""
        data = inst.data
        addressed = inst.phase(self.now(), self.faults) in ADDRESSED_PHASES
        return {
            "id": inst.id,
            "region": data["region"],
            "product_type": "GPU",
            "host_name": inst.marker,
            "cpu_cores": data["cpu_cores"],
            "ram": data["ram"],
            "gpu": data["gpu"],
            "gpu_type": data["gpu"],
            "gpu_count": data["gpu_count"],
            "disk_size": data["disk_size"],
            "ephemeral": data["ephemeral"],
            "public_ipv4": data["public_ipv4"] if addressed else "",
            "price_per_hour": data["price_per_hour"],
            "os": data["os"],
            "status": self.instance_status(inst),
        }

    def instance_detail(self, inst: SimInstance) -> dict[str, Any]:
        """An instance as `GET /computing/instance/{id}` shows it (numbers as strings, as documented)."""
        data = inst.data
        now = self.now()
        addressed = inst.phase(now, self.faults) in ADDRESSED_PHASES
        hours = self.running_seconds(inst, now) / 3600.0
        return {
            "id": inst.id,
            "region": data["region"],
            "product_type": "GPU",
            "instance_type": "GPU",
            "host_name": inst.marker,
            "cpu_cores": str(data["cpu_cores"]),
            "ram": str(data["ram"]),
            "gpu": data["gpu"],
            "gpu_type": data["gpu"],
            "gpu_count": data["gpu_count"],
            "disk_size": data["disk_size"],
            "ephemeral": data["ephemeral"],
            "public_ipv4": data["public_ipv4"] if addressed else "",
            "lan_ipv4": data["lan_ipv4"],
            "login_method": "SSH Key",
            "os": data["os"],
            "exposed_ports": data["exposed_ports"],
            "user_name": data["user_name"],
            "password": "",
            "status": self.instance_status(inst),
            "start_time": est_time(inst.created_at),
            "running_time": f"{hours:.4f} hours",
            "total_cost": f"${hours * data['price_per_hour']:.4f}",
        }

    def running_seconds(self, inst: SimInstance, now: float) -> float:
        """Seconds the instance has run: closed run periods plus the open one, if running now."""
        accrued = float(inst.data.get("accrued_seconds", 0.0))
        phase = inst.phase(now, self.faults)
        if inst.running_since is not None and phase in (Phase.RUNNING, Phase.STARTING, Phase.REBOOTING):
            accrued += max(now - inst.running_since, 0.0)
        elif inst.running_since is not None and phase == Phase.PREEMPTED and inst.preempted is not None:
            accrued += max(inst.preempted - inst.running_since, 0.0)
        return accrued

    def gone_instances(self, account: str) -> list[SimInstance]:
        """Deleted and preempted instances of one account, in the order they went."""
        now = self.now()
        gone = [i for i in self.instances.values() if i.account == account and i.is_gone(now, self.faults)]
        return sorted(gone, key=lambda i: (i.deleted_at if i.deleted_at is not None else (i.preempted or 0.0), i.id))

    # ----- routes ------------------------------------------------------------------------------
    def create_app(self) -> FastAPI:
        app = super().create_app()

        async def json_body(request: Request) -> dict[str, Any] | None:
            try:
                body = await read_json(request)
            except BodyNotJson:
                return None
            return body if isinstance(body, dict) else None

        @app.get(API_PREFIX + "/computing/products")
        async def list_products(request: Request) -> Response:
            call = await self.open_call(request, "products", ("malformed",))
            if not isinstance(call, Call):
                return call
            nested: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for product in self.products.values():
                nested.setdefault(product.dc.region, {}).setdefault(product.gpu.nebula_family, []).append(product.as_json())
            return self.answer(envelope(MSG_PRODUCTS, nested), call.fault)

        @app.get(API_PREFIX + "/computing/images")
        async def list_images(request: Request) -> Response:
            call = await self.open_call(request, "images", ("malformed",))
            if not isinstance(call, Call):
                return call
            by_region: dict[str, list[dict[str, Any]]] = {}
            for image in self.images.values():
                by_region.setdefault(image.region, []).append(image.as_json())
            return self.answer(envelope(MSG_IMAGES, by_region), call.fault)

        @app.post(API_PREFIX + "/computing/instance")
        async def create_instance(request: Request) -> Response:
            call = await self.open_call(request, "create", CREATE_FAULTS)
            if not isinstance(call, Call):
                return call
            account = call.account
            body = await json_body(request)
            if body is None:
                return failed(400, MSG_INVALID_JSON)
            for name in ("instance_name", "product_id", "image_id", "ssh_key_id"):
                if body.get(name) in (None, ""):
                    return failed(400, f"{name} is required")
            name, product_id, image_id = body["instance_name"], body["product_id"], body["image_id"]
            if not all(isinstance(v, str) for v in (name, product_id, image_id)):
                return failed(400, "instance_name, product_id and image_id must be strings")
            if len(name) > MAX_INSTANCE_NAME:
                return failed(400, f"instance_name must be at most {MAX_INSTANCE_NAME} characters")
            ssh_key_id = body["ssh_key_id"]
            if isinstance(ssh_key_id, str) and ssh_key_id.isdigit():
                ssh_key_id = int(ssh_key_id)
            if not isinstance(ssh_key_id, int) or isinstance(ssh_key_id, bool):
                return failed(400, "ssh_key_id must be a number")
            product = self.products.get(product_id)
            if product is None:
                return failed(404, MSG_PRODUCT_NOT_FOUND)
            image = self.images.get(image_id)
            if image is None:
                return failed(400, MSG_IMAGE_NOT_FOUND)
            if image.dc_id != product.dc.dc_id or image.region != product.dc.region:
                return failed(400, MSG_DC_MISMATCH)
            key = next((k for k in self.ssh_keys.get(account, []) if k.id == ssh_key_id), None)
            if key is None:
                return failed(400, MSG_SSH_KEY_NOT_FOUND)
            if product.free <= 0:
                return failed(400, MSG_OUT_OF_STOCK)
            product.stock -= 1
            instance = self.new_instance(account, name, product, image)
            self.record_create(instance, product_id=product.id, image_id=image.id, ssh_key_id=key.id)
            if call.fault == "lost":
                return await self.lost_response()
            return JSONResponse(envelope(MSG_CREATED, include_data=False))

        async def instance_list(request: Request, gone: bool) -> Response:
            call = await self.open_call(request, "list", ("malformed",))
            if not isinstance(call, Call):
                return call
            account = call.account
            paging = parse_paging(request)
            if paging is None:
                return failed(400, MSG_BAD_PAGING)
            limit, offset = paging
            # Gone instances (deleted or preempted) show status "Deleted" and no address.
            instances = self.gone_instances(account) if gone else self.account_instances(account)
            rows = [self.instance_row(i) for i in instances]
            message = MSG_DELETED_INSTANCES if gone else MSG_INSTANCES
            return self.answer(envelope(message, rows[offset : offset + limit], total_instance=len(rows)), call.fault)

        @app.get(API_PREFIX + "/computing/instances")
        async def list_instances(request: Request) -> Response:
            return await instance_list(request, gone=False)

        @app.get(API_PREFIX + "/computing/deleted-instances")
        async def list_deleted_instances(request: Request) -> Response:
            return await instance_list(request, gone=True)

        @app.get(API_PREFIX + "/computing/instance/{instance_id}")
        async def instance_detail(request: Request, instance_id: str) -> Response:
            call = await self.open_call(request, "detail", READ_FAULTS, instance_id=instance_id)
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = None if call.fault == "phantom_404" else self.live_instance(account, instance_id)
            if inst is None:
                return failed(404, MSG_INSTANCE_NOT_FOUND)
            return JSONResponse(envelope(MSG_DETAIL, [self.instance_detail(inst)]))

        @app.delete(API_PREFIX + "/computing/instance/{instance_id}")
        async def delete_instance(request: Request, instance_id: str) -> Response:
            call = await self.open_call(request, "delete", DELETE_FAULTS, instance_id=instance_id)
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = self.live_instance(account, instance_id)
            if inst is None:
                return failed(404, MSG_INSTANCE_NOT_FOUND)
            if call.fault == "ignored_delete":
                return JSONResponse(envelope(MSG_DELETED, include_data=False))
            self.close_run(inst)
            self.record_delete(inst)
            product = self.products.get(inst.data["product_id"])
            if product is not None:
                product.stock += 1
            return JSONResponse(envelope(MSG_DELETED, include_data=False))

        @app.get(API_PREFIX + "/computing/instance/{instance_id}/{action}")
        async def instance_action(request: Request, instance_id: str, action: str) -> Response:
            if action not in MSG_ACTIONS:
                return failed(404, "Not Found")
            call = await self.open_call(request, "action")
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = self.live_instance(account, instance_id)
            if inst is None:
                return failed(404, MSG_INSTANCE_NOT_FOUND)
            now = self.now()
            phase = inst.phase(now, self.faults)
            if action == "start":
                if phase != Phase.STOPPED:
                    return failed(400, MSG_NOT_STOPPED)
                inst.stopped_at = None
                inst.start_requested_at = now
                inst.running_since = now
            elif phase != Phase.RUNNING:
                return failed(400, MSG_NOT_RUNNING)
            elif action == "stop":
                self.close_run(inst)
                inst.stopped_at = now
            else:
                inst.reboot_requested_at = now
            return JSONResponse(envelope(MSG_ACTIONS[action], include_data=False))

        @app.get(API_PREFIX + "/ssh-keys")
        async def list_ssh_keys(request: Request) -> Response:
            call = await self.open_call(request, "ssh_keys", ("malformed",))
            if not isinstance(call, Call):
                return call
            account = call.account
            paging = parse_paging(request)
            if paging is None:
                return failed(400, MSG_BAD_PAGING)
            limit, offset = paging
            keys = self.ssh_keys.get(account, [])
            rows = [
                {"id": k.id, "key_name": k.key_name, "key_data": k.key_data, "create_time": est_time(k.created_at)}
                for k in keys[offset : offset + limit]
            ]
            return self.answer(envelope(MSG_SSH_KEYS, {"total_ssh_keys": len(keys), "ssh_keys": rows}), call.fault)

        @app.post(API_PREFIX + "/ssh-keys")
        async def create_ssh_key(request: Request) -> Response:
            call = await self.open_call(request, "ssh_keys", ("lost",))
            if not isinstance(call, Call):
                return call
            account = call.account
            body = await json_body(request)
            if body is None:
                return failed(400, MSG_INVALID_JSON)
            key_name, key_data = body.get("key_name"), body.get("key_data")
            if not isinstance(key_name, str) or not key_name.strip():
                return failed(400, "key_name is required")
            if not isinstance(key_data, str) or not is_ssh_public_key(key_data):
                return failed(400, MSG_INVALID_SSH_KEY)
            key = SshKey(next(self._ssh_key_ids), key_name.strip(), key_data.strip(), self.now())
            self.ssh_keys.setdefault(account, []).append(key)
            if call.fault == "lost":
                return await self.lost_response()
            data = {"id": key.id, "key_name": key.key_name, "key_data": key.key_data, "create_time": str(int(key.created_at))}
            return JSONResponse(envelope(MSG_SSH_KEY_CREATED, data))

        @app.delete(API_PREFIX + "/ssh-keys/{key_id}")
        async def delete_ssh_key(request: Request, key_id: str) -> Response:
            call = await self.open_call(request, "ssh_keys")
            if not isinstance(call, Call):
                return call
            account = call.account
            keys = self.ssh_keys.get(account, [])
            key = next((k for k in keys if str(k.id) == key_id), None)
            if key is None:
                return failed(404, MSG_SSH_KEY_NOT_FOUND)
            keys.remove(key)
            return JSONResponse(envelope(MSG_SSH_KEY_DELETED, {}))

        return app

    # ----- lifecycle helpers -------------------------------------------------------------------
    def new_instance(self, account: str, name: str, product: Product, image: Image) -> SimInstance:
        seq = self.next_seq()
        container = product.dc.product_type == "Container"
        data = {
            "product_id": product.id,
            "region": product.dc.region,
            "cpu_cores": product.cpu,
            "ram": product.ram,
            "gpu": product.gpu.nebula_name,
            "gpu_count": product.gpu_count,
            "disk_size": product.disk_size,
            "ephemeral": product.ephemeral,
            "price_per_hour": product.price_per_hour,
            "os": image.os_name,
            "public_ipv4": f"{('203.0.113', '198.51.100', '192.0.2')[seq % 3]}.{seq % 250 + 2}",
            "lan_ipv4": f"10.{product.dc.dc_id}.{seq // 250 % 256}.{seq % 250 + 2}",
            "exposed_ports": f"{30000 + seq % 30000}:22" if container else "",
            "user_name": "root" if container else "ubuntu",
            "accrued_seconds": 0.0,
        }
        instance_id = f"{product.dc.dc_id}0{_uuid(self._id_rng)}"
        return SimInstance(instance_id, account, self.now(), self.config.ready_after, marker=name, data=data)

    def close_run(self, inst: SimInstance) -> None:
        """Book the running time of the open run period (before a stop or a delete)."""
        now = self.now()
        if inst.running_since is not None and inst.phase(now, self.faults) in (Phase.RUNNING, Phase.STARTING, Phase.REBOOTING):
            inst.data["accrued_seconds"] = float(inst.data.get("accrued_seconds", 0.0)) + max(now - inst.running_since, 0.0)
            inst.running_since = None
