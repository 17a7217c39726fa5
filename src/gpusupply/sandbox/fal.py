"""fal.ai Compute (Platform API v1), simulated: `/v1/compute/instances` list/get/create/delete.

Faithful to the documented API (reference/vendor-apis.md section 2, seeds 000 and 004):
`Authorization: Key <key>`, the `{"error": {"type", "message", ...}}` envelope, cursor pages whose
cursor is the base64 page number ("Mg==" is page 2), `Idempotency-Key` replay for 10 minutes,
statuses init -> pending -> provisioning -> ready (with `ip`), delete 204 then 404.

Inferred where fal documents nothing (docs/vendors/fal.md says so):
- A default rate limit of 10 requests/s per key over all Compute routes (burst 10).
- Capacity: a small deterministic stock per instance type (8x per sector). When it is gone a create
  answers 400 `validation_error` "Insufficient capacity ...". Deleted and preempted instances free it.
- Only successful creates are cached under an `Idempotency-Key`; reusing a key with a different body
  inside the window is a 400 `validation_error`.
- A key whose text starts with `nocompute` stands for an admin key without compute permission (403).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
from dataclasses import dataclass
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
    account_fingerprint,
    authorization_token,
    read_json,
)
from gpusupply.vendors.fal import LIMITS

API_PREFIX = "/v1/compute/instances"

INSTANCE_TYPES = ("gpu_8x_h100_sxm5", "gpu_1x_h100_sxm5")
SECTOR_TYPE = "gpu_8x_h100_sxm5"  # the only type that takes a sector
SECTORS = ("sector_1", "sector_2", "sector_3")
REGIONS = ("us-west", "us-central", "us-east", "eu-north", "eu-west", "other")
REGION_WEIGHTS = (30, 20, 25, 10, 10, 5)
ERROR_TYPES = ("authorization_error", "validation_error", "not_found", "rate_limited", "server_error", "not_implemented")

IDEMPOTENCY_WINDOW_SECONDS = 600.0  # "Responses cached for 10 minutes per unique key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 100
# Requests per second per key over all Compute routes, burst: what the adapter assumes (fal documents none).
assert LIMITS.key is not None  # one bucket for the key
DEFAULT_RATE_LIMIT = LIMITS.key
RATE_BUCKET = "compute"
NO_COMPUTE_KEY_PREFIX = "nocompute"

# Messages of the documented examples (seed pages); others are ours.
MSG_AUTH_REQUIRED = "Authentication required"
MSG_ACCESS_DENIED = "Access denied"
MSG_NOT_FOUND = "Resource not found"
MSG_RATE_LIMITED = "Rate limit exceeded"
MSG_SERVER_ERROR = "An unexpected error occurred"

_IP_BLOCKS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges


def fal_error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None, request_id: str | None = None) -> JSONResponse:
    error: dict[str, str] = {"type": kind, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def encode_cursor(page: int) -> str:
    return base64.b64encode(str(page).encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    """Page number from a cursor, or None when it is not one of ours."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    if not text.isdigit():
        return None
    page = int(text)
    return page if page >= 1 else None


def parse_limit(text: str | None) -> int | None:
    """Page size from the `limit` query parameter (clamped to the maximum), or None when invalid."""
    if text is None:
        return DEFAULT_PAGE_LIMIT
    try:
        limit = int(text)
    except ValueError:
        return None
    return min(limit, MAX_PAGE_LIMIT) if limit >= 1 else None


def fal_status(phase: str, elapsed: float, ready_after: float) -> str:
    """The fal status word for a simulated phase (pure)."""
    if phase == Phase.CREATING:
        return "init" if elapsed < ready_after / 6 else "pending"
    if phase == Phase.LOADING:
        return "provisioning"
    if phase in (Phase.RUNNING, Phase.STARTING, Phase.REBOOTING):
        return "ready"
    if phase in (Phase.STOPPING, Phase.STOPPED):
        return "stopped"
    return "unknown"


@dataclass
class _CachedCreate:
    at: float
    fingerprint: str
    body: dict[str, Any]


class FalSandbox(VendorSandbox):
    name = "fal"

    def capacity_refusal(self) -> Response:
        return fal_error(400, "validation_error", "Insufficient capacity for this instance type; try again later")

    key_bucket = RATE_BUCKET  # one limit over every Compute route

    def __init__(self, config: SandboxConfig | None = None, *, rate_limit: tuple[float, float] = DEFAULT_RATE_LIMIT):
        super().__init__(config)
        self.rate_limits = {RATE_BUCKET: rate_limit}
        self._ids_rng = self.id_rng() if self.config.id_base else self.rng  # seeded runs keep their ids
        inventory = random.Random(f"fal-inventory:{self.config.seed}")
        # Stock grows a little with the configured marketplace size, so big runs are not starved.
        extra = self.config.offers // 1000
        self.stock: dict[tuple[str, str | None], int] = {("gpu_1x_h100_sxm5", None): 4 + extra + inventory.randint(0, 3)}
        for sector in SECTORS:
            self.stock[(SECTOR_TYPE, sector)] = 1 + extra + inventory.randint(0, 1)
        if self.config.stock is not None:
            self.stock = dict.fromkeys(self.stock, self.config.stock)
        # Each sector is a placement inside one region.
        self.sector_regions = {s: inventory.choices(REGIONS[:5], weights=REGION_WEIGHTS[:5])[0] for s in SECTORS}
        self.idempotency: dict[tuple[str, str], _CachedCreate] = {}
        self._request_ids = 0

    # ----- envelope ---------------------------------------------------------------------------
    def error_response(
        self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None
    ) -> Response:
        if kind not in ERROR_TYPES:
            kind = "server_error"
        headers = None
        if retry_after is not None:
            # HTTP delay-seconds is an integer; round up so a client that waits this long conforms.
            headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
        if message is None:
            message = {
                "rate_limited": MSG_RATE_LIMITED,
                "not_found": MSG_NOT_FOUND,
                "authorization_error": MSG_AUTH_REQUIRED,
            }.get(kind)
        if message is None and kind == "server_error":
            message = {503: "Service temporarily unavailable", 504: "Upstream request timed out"}.get(status, MSG_SERVER_ERROR)
        request_id = self._next_request_id() if kind == "server_error" else None
        return fal_error(status, kind, message or kind, headers=headers, request_id=request_id)

    def _next_request_id(self) -> str:
        self._request_ids += 1
        return f"req_{self.config.seed:x}{self._request_ids:06d}"

    def route_error(self, status: int, detail: str) -> Response:
        if status == 405:
            return fal_error(405, "not_implemented", "Method not allowed")
        if status == 404:
            return fal_error(404, "not_found", MSG_NOT_FOUND)
        return fal_error(status, "server_error" if status >= 500 else "validation_error", detail)

    # ----- accounts and instances ---------------------------------------------------------------
    def authenticate(self, request: Request) -> str | Response:
        """`Authorization: Key <key>`; keys starting "nocompute" have no Compute access (403)."""
        account = authorization_token(request, ("key",))
        if account is None:
            return fal_error(401, "authorization_error", MSG_AUTH_REQUIRED)
        if account.startswith(NO_COMPUTE_KEY_PREFIX):
            return fal_error(403, "authorization_error", MSG_ACCESS_DENIED)
        return account

    def render(self, inst: SimInstance) -> dict[str, Any]:
        now = self.now()
        status = fal_status(inst.phase(now, self.faults), now - inst.created_at, inst.ready_after)
        body: dict[str, Any] = {"id": inst.id, "instance_type": inst.data["instance_type"], "region": inst.data["region"]}
        if inst.data.get("sector"):
            body["sector"] = inst.data["sector"]
        if status == "ready":
            body["ip"] = inst.data["ip"]
        body["status"] = status
        body["creator_user_nickname"] = inst.data["creator_user_nickname"]
        return body

    def _new_id(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            candidate = "inst_" + "".join(self._ids_rng.choice(alphabet) for _ in range(12))
            if candidate not in self.instances:
                return candidate

    def _in_use(self, instance_type: str, sector: str | None) -> int:
        now = self.now()
        return sum(
            1
            for i in self.instances.values()
            if i.data["instance_type"] == instance_type
            and (instance_type != SECTOR_TYPE or i.data.get("sector") == sector)
            and not i.is_gone(now, self.faults)
        )

    def _place(self, instance_type: str, sector: str | None) -> tuple[str | None, bool]:
        """(sector, has_capacity) for a new instance; an 8x without a sector goes where there is room."""
        if instance_type != SECTOR_TYPE:
            return None, self._in_use(instance_type, None) < self.stock[(instance_type, None)]
        candidates = (sector,) if sector else SECTORS
        for candidate in candidates:
            if self._in_use(instance_type, candidate) < self.stock[(instance_type, candidate)]:
                return candidate, True
        return sector, False

    def _expire_idempotency(self) -> None:
        now = self.now()
        for key in [k for k, v in self.idempotency.items() if now - v.at >= IDEMPOTENCY_WINDOW_SECONDS]:
            del self.idempotency[key]

    # ----- validation (pure over the parsed body) -----------------------------------------------
    @staticmethod
    def validate_create(body: Any) -> tuple[str, str, str | None] | str:
        """(instance_type, ssh_key, sector), or the validation message."""
        if not isinstance(body, dict):
            return "Request body must be a JSON object"
        instance_type = body.get("instance_type")
        if instance_type is None:
            return "instance_type is required"
        if instance_type not in INSTANCE_TYPES:
            return f"instance_type must be one of {', '.join(INSTANCE_TYPES)}"
        ssh_key = body.get("ssh_key")
        if not isinstance(ssh_key, str) or not ssh_key.strip():
            return "ssh_key is required and must be a non-empty string"
        sector = body.get("sector")
        if sector is not None:
            if sector not in SECTORS:
                return f"sector must be one of {', '.join(SECTORS)}"
            if instance_type != SECTOR_TYPE:
                return f"sector is only valid with {SECTOR_TYPE}"
        return instance_type, ssh_key, sector

    # ----- routes ---------------------------------------------------------------------------------
    def create_app(self) -> FastAPI:
        app = super().create_app()

        @app.get(API_PREFIX)
        async def list_instances(request: Request) -> Response:
            call = await self.open_call(request, RATE_BUCKET, ("malformed",))
            if not isinstance(call, Call):
                return call
            account = call.account
            limit = parse_limit(request.query_params.get("limit"))
            if limit is None:
                return fal_error(400, "validation_error", "limit must be an integer >= 1")
            page = 1
            cursor = request.query_params.get("cursor")
            if cursor:
                decoded = decode_cursor(cursor)
                if decoded is None:
                    return fal_error(400, "validation_error", "Invalid cursor")
                page = decoded
            live = sorted(self.account_instances(account), key=lambda i: (i.created_at, i.data["seq"]))
            items = [self.render(i) for i in live[(page - 1) * limit : page * limit]]
            has_more = page * limit < len(live)
            body = {"instances": items, "next_cursor": encode_cursor(page + 1) if has_more else None, "has_more": has_more}
            if call.fault == "malformed":
                return self.malformed_list(body)
            return JSONResponse(body)

        @app.get(API_PREFIX + "/{instance_id}")
        async def get_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, RATE_BUCKET, READ_FAULTS, instance_id=instance_id)
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = None if call.fault == "phantom_404" else self.live_instance(account, instance_id)
            if inst is None:
                return fal_error(404, "not_found", MSG_NOT_FOUND)
            return JSONResponse(self.render(inst))

        @app.post(API_PREFIX)
        async def create_instance(request: Request) -> Response:
            call = await self.open_call(request, RATE_BUCKET, CREATE_FAULTS)
            if not isinstance(call, Call):
                return call
            account = call.account
            try:
                body = await read_json(request)
            except BodyNotJson:
                return fal_error(400, "validation_error", "Request body must be valid JSON")
            parsed = self.validate_create(body)
            if isinstance(parsed, str):
                return fal_error(400, "validation_error", parsed)
            instance_type, ssh_key, sector = parsed
            idem_key = request.headers.get("idempotency-key") or None
            if idem_key is not None and len(idem_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                return fal_error(400, "validation_error", f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
            fingerprint = hashlib.sha256(json.dumps([instance_type, ssh_key, sector]).encode()).hexdigest()
            if idem_key is not None:
                self._expire_idempotency()
                cached = self.idempotency.get((account, idem_key))
                if cached is not None:
                    if cached.fingerprint != fingerprint:
                        return fal_error(400, "validation_error", "Idempotency-Key was already used with different request parameters")
                    if call.fault == "lost":
                        return await self.lost_response()
                    return JSONResponse(cached.body, status_code=201)
            placed_sector, has_room = self._place(instance_type, sector)
            if not has_room:
                where = f" in {placed_sector}" if placed_sector else ""
                return fal_error(400, "validation_error", f"Insufficient capacity for {instance_type}{where}; try again later")
            inst = self._commit(account, instance_type, placed_sector, idem_key)
            response_body = self.render(inst)
            if idem_key is not None:
                self.idempotency[(account, idem_key)] = _CachedCreate(self.now(), fingerprint, response_body)
            if call.fault == "lost":
                return await self.lost_response()
            return JSONResponse(response_body, status_code=201)

        @app.delete(API_PREFIX + "/{instance_id}")
        async def delete_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, RATE_BUCKET, DELETE_FAULTS, instance_id=instance_id)
            if not isinstance(call, Call):
                return call
            account = call.account
            inst = self.live_instance(account, instance_id)
            if inst is None:
                return fal_error(404, "not_found", MSG_NOT_FOUND)
            if call.fault != "ignored_delete":
                self.record_delete(inst)
            return Response(status_code=204)

        return app

    def _commit(self, account: str, instance_type: str, sector: str | None, idem_key: str | None) -> SimInstance:
        seq = self.next_seq()
        region = self.sector_regions[sector] if sector else self.rng.choices(REGIONS, weights=REGION_WEIGHTS)[0]
        block = _IP_BLOCKS[((seq - 1) // 254) % len(_IP_BLOCKS)]
        inst = SimInstance(
            id=self._new_id(),
            account=account,
            created_at=self.now(),
            ready_after=self.config.ready_after,
            marker=idem_key,  # fal has no name/label; the ledger shows the idempotency key instead
            data={
                "seq": seq,
                "instance_type": instance_type,
                "sector": sector,
                "region": region,
                "ip": f"{block}.{(seq - 1) % 254 + 1}",
                "creator_user_nickname": f"user-{account_fingerprint(account)[:8]}",
            },
        )
        self.record_create(inst, instance_type=instance_type, sector=sector, region=region)
        return inst

    def malformed_list(self, body: dict[str, Any]) -> Response:
        """A broken list answer: truncated JSON, the wrong shape, or a page that claims more with no cursor."""
        variant = self.rng.randrange(3)
        if variant == 0:
            text = json.dumps(body)
            return Response(text[: max(1, len(text) // 2)], status_code=200, media_type="application/json")
        if variant == 1:
            return JSONResponse({"data": body["instances"], "has_more": False})
        return JSONResponse({"instances": body["instances"], "next_cursor": None, "has_more": True})
