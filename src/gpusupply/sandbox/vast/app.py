"""The Vast sandbox itself: accounts, search, instances and SSH keys over HTTP, as `console.vast.ai`
serves them (the package docstring says what is faithful and what inferred)."""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpusupply.sandbox.common import (
    BodyNotJson,
    Phase,
    SandboxConfig,
    SimInstance,
    VendorSandbox,
    is_ssh_public_key,
    read_json,
)
from gpusupply.sandbox.inventory import SIM_GPUS
from gpusupply.sandbox.market import CHURN_SHARE, MarketWalk
from gpusupply.sandbox.vast.bodies import (
    COMPUTED_INSTANCE_COLUMNS,
    INSTANCE_COLUMNS,
    OFFER_FIELDS_ON_INSTANCE,
    V1_DEFAULT_LIMIT,
    V1_MAX_LIMIT,
    V1_NONPOSITIVE_LIMIT,
    CreateSpec,
    decode_token,
    encode_token,
    row_sort_key,
    vast_status,
)
from gpusupply.sandbox.vast.inventory import HOURS_PER_MONTH, OfferTable, SearchQuery, parse_search_query
from gpusupply.sandbox.vast.query import (
    Column,
    QueryError,
    column_from_rows,
    column_mask,
    parse_filters,
    sort_indices,
)
from gpusupply.vendors.vast import LIMITS

API_V0 = "/api/v0"
API_V1 = "/api/v1"

# endpoint -> (requests per second, burst): Vast's per-endpoint thresholds as the adapter reads
# them (vendors/vast.LIMITS: requests/second per identity, with a small burst).
RATE_LIMITS = LIMITS.routes
# The threshold a 429 names; search's is per minute and named by none.
THRESHOLDS = {endpoint: str(rate) for endpoint, (rate, _) in RATE_LIMITS.items() if endpoint != "search"}
DEFAULT_RATE_LIMIT = (5.0, 5.0)  # endpoints Vast documents no limit for
UNDOCUMENTED_ENDPOINTS = ("user", "ssh_list", "gpu_names", "filters")
NO_CREDIT_KEY_PREFIX = "nocredit"
START_CREDIT = 25.0

MSG_INVALID_KEY = "Invalid user key"

@dataclass
class Account:
    key: str
    user_id: int
    credit: float
    ssh_keys: list[dict[str, Any]] = field(default_factory=list)  # {"id", "key", "created_at"}


def vast_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    # JSONResponse sends exactly "application/json", which the CLI's search compares as a string.
    return JSONResponse(body, status_code=status, headers=headers)


def vast_error(status: int, error: str, msg: str, **extra: Any) -> JSONResponse:
    return vast_json({"success": False, "error": error, "msg": msg, **extra}, status)


def parse_int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 19 else None


def _proxy_page(status: int, title: str) -> Response:
    html = f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return Response(html, status_code=status, media_type="text/html")


# ----- the sandbox -------------------------------------------------------------------------------


class VastSandbox(VendorSandbox):
    name = "vast"

    def capacity_refusal(self) -> Response:
        return vast_error(410, "no_such_ask", "error 410/3907: no_such_ask Instance type is no longer available.")

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        default_rate_limit: tuple[float, float] = DEFAULT_RATE_LIMIT,
        search_quota: int | None = None,
    ):
        """`search_quota`: searches per account per UTC day before `search_quota_exceeded` (None: no quota)."""
        super().__init__(config)
        self.rate_limits = {**RATE_LIMITS, **{name: default_rate_limit for name in UNDOCUMENTED_ENDPOINTS}}
        self.offers = OfferTable(self.config.seed, self.config.offers)
        # The seeded columns moving prices start from (sandbox/market.py).
        self.base_columns = {name: self.offers.columns[name].copy() for name in ("dph_base", "min_bid", "base_rentable")}
        self.taken: dict[int, str] = {}  # ask id -> instance id holding it
        self.accounts: dict[str, Account] = {}
        self.search_quota = search_quota
        self._searches: Counter[tuple[str, str]] = Counter()
        self._ssh_key_ids = 1000

    def reprice(self, market: MarketWalk, now: float) -> None:
        columns, base = self.offers.columns, self.base_columns
        factors = np.array([market.factor(gpu.vast_name, now) for gpu in SIM_GPUS])[columns["gpu"]]
        columns["dph_base"] = np.round(base["dph_base"] * factors, 6)
        columns["min_bid"] = np.round(base["min_bid"] * factors, 6)
        # One draw per ask and churn window (a vectorised form of `market.listed`, for thousands of asks).
        draws = np.random.default_rng([market.seed, market.window(now), 7]).random(len(base["base_rentable"]))
        columns["base_rentable"] = base["base_rentable"] & (draws >= CHURN_SHARE)

    # ----- envelope -------------------------------------------------------------------------------
    def error_response(
        self, status: int, kind: str, *, retry_after: float | None = None, endpoint: str = "", message: str | None = None
    ) -> Response:
        if status == 429:
            # Whole seconds (RFC 9110), at least 1, so a client that waits this long conforms.
            headers = {"Retry-After": str(max(1, math.ceil(retry_after or 1.0)))}
            threshold = THRESHOLDS.get(endpoint)
            text = f"API requests too frequent endpoint threshold={threshold}" if threshold else "API requests too frequent"
            if endpoint == "create":  # create_instance.yaml documents this shape for its 429
                return vast_json({"detail": text}, 429, headers)
            return vast_json({"success": False, "error": "rate_limit_exceeded", "msg": text}, 429, headers)
        if status == 503:
            return _proxy_page(503, "Service Temporarily Unavailable")
        if status in (502, 504):
            return _proxy_page(status, "Bad Gateway" if status == 502 else "Gateway Time-out")
        if status >= 500:
            return vast_error(status, "server_error", message or "Internal Server Error")
        return vast_error(status, kind, message or kind)

    # ----- accounts -----------------------------------------------------------------------------
    @staticmethod
    def read_key(request: Request) -> tuple[str | None, bool]:
        """(key, valid). A Bearer header wins over `?api_key=`; no key at all is (None, True)."""
        header = request.headers.get("authorization")
        key: str | None = None
        if header is not None:
            scheme, _, rest = header.strip().partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                key = rest.strip()
        if key is None:
            key = request.query_params.get("api_key") or None
        if key is None:
            return None, True
        valid = len(key) <= 512 and key.isprintable() and not any(ch.isspace() for ch in key)
        return key, valid

    def account(self, key: str) -> Account:
        account = self.accounts.get(key)
        if account is None:
            user_id = 100_000 + int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 900_000
            credit = 0.0 if key.startswith(NO_CREDIT_KEY_PREFIX) else START_CREDIT
            account = self.accounts[key] = Account(key, user_id, credit)
        return account

    def authenticate(self, request: Request, anonymous: str | None = None) -> str | Response:
        """The call's key, or Vast's refusal. `anonymous` names the answer for a missing key: None
        means a key is required; "allow" lets the call through as the client IP."""
        key, valid = self.read_key(request)
        if key is not None and not valid:
            if anonymous is not None:  # search_offers.yaml documents a 404 for a bad key
                return vast_json({"error": "auth_error", "msg": MSG_INVALID_KEY}, 404)
            return vast_error(401, "auth_error", MSG_INVALID_KEY)
        if key is None:
            if anonymous is None:
                return vast_error(401, "auth_error", MSG_INVALID_KEY)
            key = f"anonymous:{request.client.host if request.client else 'unknown'}"
        return key

    def route_error(self, status: int, detail: str) -> Response:
        if status == 405:
            return vast_error(405, "method_not_allowed", "Method Not Allowed")
        if status == 404:
            return vast_error(404, "not_found", "Not Found")
        return vast_error(status, "invalid_request", detail)

    # ----- marketplace ---------------------------------------------------------------------------
    def rentable_mask(self) -> np.ndarray:
        """Asks free right now: listed as rentable, and not held by a live instance of ours."""
        mask = self.offers.columns["base_rentable"].copy()
        now = self.now()
        for ask_id, instance_id in list(self.taken.items()):
            inst = self.instances.get(instance_id)
            if inst is None or inst.is_gone(now, self.faults):
                del self.taken[ask_id]
                continue
            index = self.offers.index_of(ask_id)
            if index is not None:
                mask[index] = False
        return mask

    def search(self, query: SearchQuery) -> list[dict[str, Any]]:
        table = self.offers
        priced = table.priced(query.offer_type, query.storage_gb)
        rentable = self.rentable_mask()
        mask = np.ones(table.size, dtype=bool)
        for name, op, value in query.filters:
            mask &= column_mask(name, table.column(name, priced, rentable, value), op, value)
        indices = np.nonzero(mask)[0]
        keys = [(table.column(name, priced, rentable), descending) for name, descending in query.order]
        if keys and len(indices):
            subset = [(Column(col.kind, col.values[indices], None if col.alt is None else col.alt[indices]), d) for col, d in keys]
            indices = indices[sort_indices(subset, table.ids[indices])]
        return table.render(indices[: query.limit], priced, rentable, query.offer_type, self.now())

    def _quota_exceeded(self, account: str) -> Response | None:
        if self.search_quota is None:
            return None
        today = datetime.fromtimestamp(self.now(), UTC).date()
        bucket = (account, today.isoformat())
        if self._searches[bucket] >= self.search_quota:
            reset = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
            return vast_json(
                {"success": False, "error": "search_quota_exceeded", "msg": f"Daily search quota of {self.search_quota} searches exceeded"},
                429,
                {"X-RateLimit-Reset": str(int(reset.timestamp()))},
            )
        self._searches[bucket] += 1
        return None

    async def _search_route(self, request: Request, read_query: Callable[[], Awaitable[Any]], select_cols: bool = False) -> Response:
        call = await self.open_call(request, "search", ("malformed",), anonymous="allow")
        if isinstance(call, Response):
            return call
        try:
            body = await read_query()
        except ValueError:
            return vast_json({"error": "invalid_request", "msg": "Invalid json body"}, 400)
        columns: list[str] | None = None
        if select_cols:
            if not isinstance(body, dict) or not isinstance(body.get("q", {}), dict):
                return vast_json({"error": "invalid_request", "msg": "Invalid json body"}, 400)
            cols = body.get("select_cols", ["*"])
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                return vast_json({"error": "invalid_request", "msg": "select_cols must be a list of column names"}, 400)
            columns = None if "*" in cols else cols
            body = body.get("q", {})
        try:
            query = parse_search_query(body)
            quota = self._quota_exceeded(call.account)
            if quota is not None:
                return quota
            offers = self.search(query)
        except QueryError as exc:
            message = str(exc)
            return vast_json({"error": "invalid_request", "msg": message if message == "Invalid json body" else f"Error in query: {message}"}, 400)
        if columns is not None:
            offers = [{c: offer.get(c) for c in columns} for offer in offers]
        if call.fault == "malformed":
            return self.malformed({"offers": offers}, "offers")
        return vast_json({"offers": offers})

    # ----- instances ----------------------------------------------------------------------------------
    def instance_row(self, inst: SimInstance) -> dict[str, Any]:
        now = self.now()
        phase = inst.phase(now, self.faults)
        actual, intended, cur_state, status_msg = vast_status(phase)
        data = inst.data
        offer: dict[str, Any] = data["offer"]
        up = phase not in (Phase.CREATING,)
        instance_id = int(inst.id)
        running = phase in (Phase.RUNNING, Phase.REBOOTING, Phase.STOPPING)
        uptime = round((now - inst.running_since) / 60.0, 2) if running and inst.running_since is not None else None
        ports = {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(data["direct_port"])}]} if up and data["direct_port"] else {}
        row: dict[str, Any] = {name: offer.get(name) for name in OFFER_FIELDS_ON_INSTANCE}
        row.update({
            "id": instance_id, "actual_status": actual, "intended_status": intended, "cur_state": cur_state,
            "next_state": intended, "label": data["label"], "template_id": None, "template_hash_id": data["template_hash_id"],
            "template_name": None, "image_uuid": data["image"], "image_args": [], "image_runtype": data["runtype"],
            "extra_env": [list(pair) for pair in data["env"]], "onstart": data["onstart"], "jupyter_token": data["jupyter_token"],
            "status_msg": status_msg, "public_ipaddr": offer["public_ipaddr"] if up else None,
            "local_ipaddrs": "172.17.0.2" if up else None, "ssh_host": data["ssh_host"] if up else None,
            "ssh_idx": data["ssh_idx"], "ssh_port": data["ssh_port"] if up else None,
            "machine_dir_ssh_port": data["direct_port"] if up and data["direct_port"] else None, "ports": ports,
            "direct_port_start": data["direct_port"] or None,
            "direct_port_end": data["direct_port"] + max(offer["direct_port_count"] - 1, 0) if data["direct_port"] else None,
            "start_date": inst.created_at, "end_date": offer["end_date"], "uptime_mins": uptime,
            "duration": round(now - inst.created_at, 3),
            "cpu_util": 0.02 if running else 0.0, "mem_limit": round(offer["cpu_ram"] / 1024.0, 1),
            "mem_usage": 0.5 if running else 0.0, "vmem_usage": 0.0, "gpu_totalram": offer["gpu_ram"],
            "gpu_util": 0.0 if running else None, "gpu_temp": 38.0 if running else None, "disk_space": data["disk"],
            "disk_util": 0.01 if up else None, "disk_usage": round(data["disk"] * 0.01, 2) if up else None,
            "rentable": False, "is_bid": data["price"] is not None, "dph_total": data["dph_total"],
            "dlperf_per_dphtotal": round(offer["dlperf"] / data["dph_total"], 3) if data["dph_total"] else None,
            "flops_per_dphtotal": round(offer["total_flops"] / data["dph_total"], 3) if data["dph_total"] else None,
            "storage_total_cost": data["storage_hour"],
            "vram_costperhour": round(data["dph_total"] / (offer["gpu_total_ram"] / 1024.0), 6),
            "credit_balance": None, "credit_discount": None, "client_run_time": round(now - inst.created_at, 1),
            "host_run_time": round(now - inst.created_at, 1),
            "country_code": offer["geolocation"].rsplit(",", 1)[-1].strip(), "volume_info": [],
            "search": offer["search"], "instance": offer["instance"],
        })
        return row

    def _commit(self, account: str, ask_id: int, offer: dict[str, Any], spec: CreateSpec) -> SimInstance:
        seq = self.next_seq()
        instance_id = 8_000_000 + seq
        disk_hour = round(offer["storage_cost"] * spec.disk / HOURS_PER_MONTH, 6)
        price = spec.price if spec.price is not None else offer["dph_base"]
        inst = SimInstance(
            id=str(instance_id),
            account=account,
            created_at=self.now(),
            ready_after=self.config.ready_after,
            marker=spec.label,
            data={
                "seq": seq,
                "ask_id": ask_id,
                "offer": offer,
                "image": spec.image or f"template:{spec.template_hash_id}",
                "template_hash_id": spec.template_hash_id,
                "disk": spec.disk,
                "label": spec.label,
                "runtype": spec.runtype,
                "env": spec.env,
                "onstart": spec.onstart,
                "price": spec.price,
                "dph_total": round(price + disk_hour, 6),
                "storage_hour": disk_hour,
                "ssh_host": f"ssh{1 + instance_id % 9}.vast.sandbox.invalid",  # never a real host
                "ssh_idx": str(1 + instance_id % 9),
                "ssh_port": 10_000 + (instance_id * 7) % 50_000,
                "direct_port": 20_000 + instance_id % 40_000 if offer["direct_port_count"] else 0,
                "jupyter_token": hashlib.sha256(f"jupyter:{self.config.seed}:{instance_id}".encode()).hexdigest(),
                "instance_api_key": hashlib.sha256(f"instance:{self.config.seed}:{instance_id}".encode()).hexdigest(),
                "ssh_keys": [dict(k) for k in self.account(account).ssh_keys],
            },
        )
        if spec.target_state == "stopped":
            inst.stopped_at = inst.created_at
        self.taken[ask_id] = inst.id
        self.record_create(inst, ask_id=ask_id, label=spec.label, is_bid=spec.price is not None)
        return inst

    def rows_page(self, account: str, params: dict[str, str]) -> dict[str, Any] | Response:
        """One v1 page: filters, order, keyset cursor, limit, select_cols (all JSON in the query string)."""
        def bad(message: str, error: str = "invalid_request") -> Response:
            return vast_json({"error": error, "msg": message}, 400)

        parsed: dict[str, Any] = {}
        for name, default in (("select_filters", {}), ("order_by", [{"col": "id", "dir": "asc"}]), ("limit", V1_DEFAULT_LIMIT), ("select_cols", ["*"])):
            text = params.get(name)
            if text is None:
                parsed[name] = default
                continue
            try:
                parsed[name] = json.loads(text)
            except ValueError:
                return bad(f"Error in query parameters: {name} is not valid JSON")
        limit = parsed["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int):
            return bad("Error in query parameters: limit must be an integer")
        limit = V1_NONPOSITIVE_LIMIT if limit <= 0 else min(limit, V1_MAX_LIMIT)
        known = set(INSTANCE_COLUMNS) - COMPUTED_INSTANCE_COLUMNS
        filters_body = parsed["select_filters"]
        if not isinstance(filters_body, dict):
            return bad("Error in query parameters: select_filters must be an object")
        try:
            filters = parse_filters(filters_body)
        except QueryError as exc:
            return bad(f"Error in query parameters: {exc}")
        for name, _, _ in filters:
            if name not in known:
                return bad(f"Error in query parameters: {name} is not a valid search key")
        order_body = parsed["order_by"]
        if not isinstance(order_body, list) or not all(isinstance(o, dict) and isinstance(o.get("col"), str) for o in order_body):
            return bad("Error in query parameters: order_by must be a list of {\"col\", \"dir\"}")
        order: list[tuple[str, bool]] = []
        for item in order_body:
            direction = str(item.get("dir", "asc")).lower()
            if item["col"] not in known or direction not in ("asc", "desc"):
                return bad(f"Error in query parameters: {item['col']} is not a valid sort key")
            order.append((item["col"], direction == "desc"))
        if not any(col == "id" for col, _ in order):
            order.append(("id", False))  # always the tiebreaker
        cols = parsed["select_cols"]
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            return bad("Error in query parameters: select_cols must be a list of column names")

        token = params.get("after_token")
        values = decode_token(token) if token else {}
        if values is None or (token and set(values) != {col for col, _ in order}):
            return bad("Invalid after_token", "invalid_token")
        if not filters and order == [("id", False)]:
            # The plain full listing (what a reconciler pages through): only the page's rows are
            # rendered, so paging through n instances costs O(n) per page, not n renders per page.
            instances = sorted(self.account_instances(account), key=lambda inst: int(inst.id))
            keys = [row_sort_key({"id": int(inst.id)}, order) for inst in instances]
            try:
                start = bisect.bisect_right(keys, row_sort_key(values, order)) if token else 0
            except TypeError:
                return bad("Invalid after_token", "invalid_token")
            page = [self.instance_row(inst) for inst in instances[start : start + limit]]
            total = len(instances)
            label_counts = Counter(inst.data.get("label") or "" for inst in instances)
        else:
            rows = [self.instance_row(i) for i in self.account_instances(account)]
            try:
                mask = np.ones(len(rows), dtype=bool)
                for name, op, value in filters:
                    mask &= column_mask(name, column_from_rows(name, rows), op, value)
            except QueryError as exc:
                return bad(f"Error in query parameters: {exc}")
            rows = [row for row, keep in zip(rows, mask.tolist(), strict=True) if keep]
            rows.sort(key=lambda row: row_sort_key(row, order))
            start = 0
            if token:
                try:
                    position = row_sort_key(values, order)
                    start = next((i for i, row in enumerate(rows) if row_sort_key(row, order) > position), len(rows))
                except TypeError:
                    return bad("Invalid after_token", "invalid_token")
            page = rows[start : start + limit]
            total = len(rows)
            label_counts = Counter(row.get("label") or "" for row in rows)
        more = start + limit < total
        next_token = encode_token({col: page[-1].get(col) for col, _ in order}) if more and page else None
        if "*" not in cols:
            page = [{c: row.get(c) for c in cols} for row in page]
        return {
            "success": True,
            "instances_found": len(page),
            "total_instances": total,
            "label_counts": dict(label_counts),
            "next_token": next_token,
            "instances": page,
        }

    def malformed(self, body: dict[str, Any], items_key: str) -> Response:
        """A broken list answer: truncated JSON, the wrong shape, or (instance pages) a page that
        claims more rows than it carries and no cursor."""
        variant = self.rng.randrange(3 if "total_instances" in body else 2)
        if variant == 0:
            text = json.dumps(body)
            return Response(text[: max(1, len(text) // 2)], status_code=200, media_type="application/json")
        if variant == 1:
            return vast_json({"success": True, "results": body.get(items_key)})
        items = list(body[items_key])[:-1]
        return vast_json({**body, items_key: items, "instances_found": len(items), "total_instances": len(items) + 3, "next_token": None})

    # ----- routes -----------------------------------------------------------------------------------
    def create_app(self) -> FastAPI:
        from gpusupply.sandbox.vast.routes import add_routes  # the routes read this module

        return add_routes(self, super().create_app())

    # ----- route helpers ------------------------------------------------------------------------------
    def _own(self, account: str, instance_id: str) -> SimInstance | Response:
        if parse_int(instance_id) is None:
            return vast_error(400, "invalid_args", "invalid instance_id")
        inst = self.live_instance(account, instance_id)
        if inst is None:
            return vast_error(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst

    async def _ssh_key_from(self, request: Request) -> str | Response:
        try:
            body = await read_json(request, empty={})
        except BodyNotJson:
            body = None
        key = body.get("ssh_key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key.strip():
            return vast_error(400, "no_ssh_key", "No ssh key provided")
        key = key.strip()
        if not is_ssh_public_key(key, decode_body=False):  # Vast checks the key's shape only
            return vast_error(400, "invalid_args", "Invalid ssh key: expected an OpenSSH public key such as 'ssh-ed25519 AAAA... comment'")
        return key

    def _new_key_id(self) -> int:
        self._ssh_key_ids += 1
        return self._ssh_key_ids

    def _key_id_for(self, account: str, key: str) -> int:
        entry = next((k for k in self.account(account).ssh_keys if k["key"] == key), None)
        return int(entry["id"]) if entry is not None else self._new_key_id()

    @staticmethod
    def _key_view(account: Account, entry: dict[str, Any], key_field: str) -> dict[str, Any]:
        created = datetime.fromtimestamp(entry["created_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"id": entry["id"], "user_id": account.user_id, key_field: entry["key"], "created_at": created, "deleted_at": None}
