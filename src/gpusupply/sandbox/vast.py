"""Vast.ai, simulated: marketplace search, asks, instances and SSH keys as `console.vast.ai` serves them.

Faithful to reference/vendor-apis.md section 1 and seed 001, and checked against the official
`vastai` CLI (1.9.1):
- auth by `Authorization: Bearer KEY` or `?api_key=KEY`; every non-empty key is its own account;
- `{"success": false, "error": ..., "msg": ...}` errors with the documented codes and messages,
  and `Content-Type: application/json` exactly (the CLI compares the string);
- offer search with the operator query (`POST /api/v0/bundles/`, legacy `GET /api/v0/bundles?q=`,
  `PUT /api/v0/search/asks/`) over a deterministic, columnar (numpy) inventory;
- asks accepted with `PUT /api/v0/asks/{id}/` (an ask is consumed while its instance lives);
- instances listed by v0 (`?owner=me`) and v1 (JSON query params, `next_token` keyset cursor),
  shown one by one (`{"instances": null}` once gone), started/stopped/labelled, rebooted, destroyed;
- SSH keys per account and per instance, `users/current`, `gpu_names/unique`, `instances/filters`.

Inferred where Vast documents nothing (docs/vendors/vast.md says so): rate-limit thresholds read as
requests/second with a small burst; search `limit` defaults to 1000 and is capped at 10000;
deverified machines can only be rented by their host (403); keys starting with `nocredit` stand
for accounts without credit (`missing_billing`); 503/504 come as the HTML page of a proxy.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
import math
import re
import shlex
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpusupply.sandbox.common import (
    CREATE_FAULTS,
    DELETE_FAULTS,
    READ_FAULTS,
    Phase,
    SandboxConfig,
    SimInstance,
    VendorSandbox,
)
from gpusupply.sandbox.inventory import SIM_GPUS, SIM_LOCATIONS
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

DEFAULT_SEARCH_LIMIT = 1000
MAX_SEARCH_LIMIT = 10_000
DEFAULT_ALLOCATED_STORAGE = 8.0  # GiB priced into dph_total when the query gives none
HOURS_PER_MONTH = 730.0
V1_DEFAULT_LIMIT = 25
V1_MAX_LIMIT = 25
V1_NONPOSITIVE_LIMIT = 5  # "<=0 is treated as 5"
MAX_LABEL_LENGTH = 256
MIN_DISK_GB = 8.0
MIN_BID_PRICE, MAX_BID_PRICE = 0.001, 128.0
NO_CREDIT_KEY_PREFIX = "nocredit"
START_CREDIT = 25.0

MSG_INVALID_KEY = "Invalid user key"
OFFER_TYPES = {"on-demand": "on-demand", "ondemand": "on-demand", "bid": "bid", "interruptible": "bid", "reserved": "reserved"}
OPERATORS = ("eq", "neq", "gt", "lt", "gte", "lte", "in", "notin")
SEARCH_CONTROL_KEYS = frozenset({"order", "type", "limit", "allocated_storage", "disable_bundling"})
OFFER_ALIASES = {
    "cuda_vers": "cuda_max_good",
    "dph": "dph_total",
    "dlperf_usd": "dlperf_per_dphtotal",
    "flops_usd": "flops_per_dphtotal",
    "display_active": "gpu_display_active",
    "ubuntu_version": "os_version",
}
RUNTYPE_TOKENS = frozenset(
    {"ssh", "jupyter", "args", "ssh_proxy", "ssh_direct", "ssh_direc", "jupyter_proxy", "jupyter_direct", "jupyter_direc"}
)
SSH_KEY_PATTERN = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$")

_IP_BLOCKS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges


# ----- the machines' GPUs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuTraits:
    compute_cap: int
    tflops: float  # per GPU, what `total_flops` adds up
    dlperf: float  # per GPU
    mem_bw: float  # GB/s
    max_power: int  # W
    nvlink: float  # GB/s, 0 for PCIe cards
    counts: tuple[int, ...]  # GPUs per offer
    count_weights: tuple[float, ...]
    datacenter_share: float  # how many of its machines are in datacenters


_DEFAULT_TRAITS = GpuTraits(800, 50.0, 20.0, 900.0, 300, 0.0, (1, 2, 4, 8), (0.4, 0.3, 0.2, 0.1), 0.3)
GPU_TRAITS: dict[str, GpuTraits] = {
    "RTX 4090": GpuTraits(890, 82.6, 30.0, 1008.0, 450, 0.0, (1, 2, 4, 8), (0.45, 0.25, 0.15, 0.15), 0.15),
    "RTX 3090": GpuTraits(860, 35.6, 17.0, 936.0, 350, 0.0, (1, 2, 4, 8), (0.4, 0.25, 0.2, 0.15), 0.1),
    "RTX 5090": GpuTraits(1200, 104.8, 40.0, 1792.0, 575, 0.0, (1, 2, 4, 8), (0.5, 0.25, 0.15, 0.1), 0.2),
    "RTX A6000": GpuTraits(860, 38.7, 20.0, 768.0, 300, 112.5, (1, 2, 4, 8), (0.3, 0.3, 0.2, 0.2), 0.5),
    "L40S": GpuTraits(890, 91.6, 38.0, 864.0, 350, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.8),
    "L4": GpuTraits(890, 30.3, 12.0, 300.0, 72, 0.0, (1, 2, 4, 8), (0.5, 0.2, 0.2, 0.1), 0.8),
    "A100 PCIE": GpuTraits(800, 77.9, 45.0, 1555.0, 250, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.8),
    "A100 SXM4": GpuTraits(800, 77.9, 50.0, 2039.0, 400, 600.0, (1, 2, 4, 8), (0.2, 0.1, 0.2, 0.5), 0.9),
    "H100 PCIE": GpuTraits(900, 204.9, 80.0, 2039.0, 350, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.9),
    "H100 SXM": GpuTraits(900, 267.6, 100.0, 3352.0, 700, 900.0, (1, 2, 4, 8), (0.2, 0.1, 0.1, 0.6), 0.95),
    "H200": GpuTraits(900, 267.6, 110.0, 4800.0, 700, 900.0, (1, 2, 4, 8), (0.2, 0.1, 0.1, 0.6), 0.95),
    "B200": GpuTraits(1000, 496.0, 190.0, 8000.0, 1000, 1800.0, (1, 2, 4, 8), (0.1, 0.1, 0.1, 0.7), 1.0),
}
CPU_NAMES = ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 9554 64-Core Processor", "Intel Xeon Platinum 8480+",
             "AMD Ryzen 9 7950X 16-Core Processor", "Intel Core i9-13900K", "AMD Ryzen Threadripper PRO 5975WX 32-Cores")
DISK_NAMES = ("Samsung SSD 990 PRO 2TB", "INTEL SSDPE2KX040T8", "WD_BLACK SN850X 4000GB", "Micron_7450_MTFDKCC3T8TFR", "KIOXIA KCD81RUG7T68")
MOBO_NAMES = ("ROMED8-2T", "H13SSL-N", "X13DEG-QT", "ProArt X670E-CREATOR", "WRX80 Creator", "G493-ZB3-AAP1")
# CUDA version the driver supports -> driver version string
DRIVERS = ((12.2, "535.183.01"), (12.4, "550.127.05"), (12.6, "560.35.03"), (12.8, "570.124.04"))
OS_VERSIONS = ("20.04", "22.04", "24.04")
VERIFICATIONS = ("verified", "unverified", "deverified")
VERIFICATION_WEIGHTS = (0.85, 0.13, 0.02)
_LOCATION_WEIGHTS = tuple(10.0 if c == "US" else 5.0 if c in ("CA", "DE", "NL", "GB", "SE") else 2.0 for c, _ in SIM_LOCATIONS)


def driver_number(version: str) -> int | None:
    """'535.86.05' -> 535086005, the way the CLI compares driver versions."""
    parts = version.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor, patch = (int(p) for p in parts)
    return major * 1_000_000 + minor * 1_000 + patch


def public_ip(machine_id: int) -> str:
    return f"{_IP_BLOCKS[(machine_id // 254) % len(_IP_BLOCKS)]}.{machine_id % 254 + 1}"


# ----- query engine (shared by offer search and the v1 instance filters) -----------------------


class QueryError(ValueError):
    """A query the vendor refuses (400)."""


def normalize_text(value: Any) -> str:
    """How Vast compares strings: `_` and space are the same, case does not matter."""
    return " ".join(str(value).replace("_", " ").split()).lower()


@dataclass(frozen=True, slots=True)
class Column:
    """One field over many rows, typed for comparison. Text is normalized; null is None (text)
    or NaN (numbers, booleans as 0/1). `alt` is a second text a value may match (country code)."""

    kind: Literal["num", "bool", "str"]
    values: np.ndarray
    alt: np.ndarray | None = None


def coerce_scalar(name: str, kind: str, value: Any) -> float:
    """A query value as a number; numeric strings are coerced ("0.99", "1")."""
    if kind == "bool":
        if isinstance(value, bool):
            return float(value)
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return 1.0
        if text in ("false", "0"):
            return 0.0
        raise QueryError(f"{name}: {value!r} is not a boolean")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise QueryError(f"{name}: {value!r} is not a number")


def _null_mask(column: Column) -> np.ndarray:
    if column.kind == "str":
        return np.asarray(column.values == None, dtype=bool)  # noqa: E711 - elementwise on an object array
    return np.isnan(column.values)


def _equal_mask(name: str, column: Column, value: Any) -> np.ndarray:
    if value is None:
        return _null_mask(column)
    if column.kind == "str":
        target = normalize_text(value)
        mask = np.asarray(column.values == target, dtype=bool)
        if column.alt is not None:
            mask |= np.asarray(column.alt == target, dtype=bool)
        return mask
    return np.asarray(column.values == coerce_scalar(name, column.kind, value), dtype=bool)


def column_mask(name: str, column: Column, op: str, value: Any) -> np.ndarray:
    """Rows where `field op value` holds (pure; vectorised over the column)."""
    if op not in OPERATORS:
        raise QueryError(f"{name}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    if op in ("in", "notin"):
        if not isinstance(value, list):
            raise QueryError(f"{name}: {op} needs a list of values")
        mask = np.zeros(len(column.values), dtype=bool)
        for item in value:
            mask |= _equal_mask(name, column, item)
        return ~mask if op == "notin" else mask
    if op in ("eq", "neq"):
        mask = _equal_mask(name, column, value)
        return ~mask if op == "neq" else mask
    if column.kind == "str":
        raise QueryError(f"{name}: {op} needs a numeric field")
    number = coerce_scalar(name, column.kind, value)
    values = column.values
    with np.errstate(invalid="ignore"):
        if op == "gt":
            return values > number
        if op == "gte":
            return values >= number
        if op == "lt":
            return values < number
        return values <= number


def parse_filters(query: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[tuple[str, str, Any]]:
    """`{"num_gpus": {"gte": 2}, ...}` -> [("num_gpus", "gte", 2), ...]; control keys skipped."""
    filters: list[tuple[str, str, Any]] = []
    for name, condition in query.items():
        if name in skip:
            continue
        if not isinstance(condition, dict):
            raise QueryError(f"{name}: a filter must be an object like {{\"eq\": value}}")
        for op, value in condition.items():
            if op not in OPERATORS:
                raise QueryError(f"{name}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
            filters.append((name, op, value))
    return filters


TEXT_FIELDS = frozenset({
    "actual_status", "intended_status", "cur_state", "next_state", "label", "gpu_name", "verification", "geolocation",
    "image_uuid", "image_runtype", "status_msg", "onstart", "ssh_host", "public_ipaddr", "cpu_name", "cpu_arch",
    "gpu_arch", "disk_name", "mobo_name", "os_version", "driver_version", "template_hash_id", "template_name",
    "country_code", "jupyter_token", "local_ipaddrs", "logo", "webpage", "time_remaining", "time_remaining_isbid",
})


def column_from_rows(name: str, rows: Sequence[dict[str, Any]]) -> Column:
    """A Column over dict rows (instances): text for text fields, numbers otherwise."""
    raw = [row.get(name) for row in rows]
    if name in TEXT_FIELDS or any(isinstance(v, str) for v in raw):
        values = np.array([None if v is None else normalize_text(v) for v in raw] or [], dtype=object)
        alt = None
        if name == "geolocation":
            alt = np.array([None if v is None else normalize_text(str(v).rsplit(",", 1)[-1]) for v in raw], dtype=object)
        return Column("str", values, alt)
    kind: Literal["num", "bool"] = "bool" if raw and all(v is None or isinstance(v, bool) for v in raw) else "num"
    numbers = np.array([math.nan if v is None or not isinstance(v, int | float) else float(v) for v in raw], dtype=float)
    return Column(kind, numbers)


def sort_indices(keys: Sequence[tuple[Column, bool]], tiebreak: np.ndarray) -> np.ndarray:
    """Row order for [(column, descending), ...], then `tiebreak` ascending (np.lexsort: last key first)."""
    sort_keys: list[np.ndarray] = [tiebreak]
    for column, descending in reversed(keys):
        if column.kind == "str":
            text = np.array(["" if v is None else v for v in column.values], dtype=object).astype(str)
            _, codes = np.unique(text, return_inverse=True)
            key = codes.astype(float)
        else:
            key = column.values.astype(float)
        sort_keys.append(-key if descending else key)
    return np.lexsort(sort_keys)


# ----- the marketplace ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchQuery:
    filters: tuple[tuple[str, str, Any], ...]
    order: tuple[tuple[str, bool], ...]  # (field, descending)
    offer_type: str  # on-demand | bid | reserved
    limit: int
    storage_gb: float


def parse_search_query(body: Any) -> SearchQuery:
    """A `/bundles/` query body -> SearchQuery; raises QueryError (400) on anything Vast refuses."""
    if not isinstance(body, dict):
        raise QueryError("Invalid json body")
    offer_type = OFFER_TYPES.get(str(body.get("type") or "on-demand").strip().lower())
    if offer_type is None:
        raise QueryError(f"type must be one of on-demand, bid, reserved (got {body.get('type')!r})")
    limit_value = body.get("limit")
    if limit_value is None:
        limit = DEFAULT_SEARCH_LIMIT
    else:
        try:
            limit = int(coerce_scalar("limit", "num", limit_value))
        except QueryError:
            raise QueryError(f"limit must be an integer (got {limit_value!r})") from None
        limit = max(1, min(limit, MAX_SEARCH_LIMIT))
    storage_value = body.get("allocated_storage")
    storage = DEFAULT_ALLOCATED_STORAGE if storage_value is None else coerce_scalar("allocated_storage", "num", storage_value)
    if storage < 0:
        raise QueryError("allocated_storage must not be negative")
    order: list[tuple[str, bool]] = []
    raw_order = body.get("order")
    if raw_order is None:
        raw_order = [["score", "desc"]]
    if not isinstance(raw_order, list):
        raise QueryError("order must be a list of [field, \"asc\"|\"desc\"] pairs")
    for item in raw_order:
        if not isinstance(item, list | tuple) or not item or not isinstance(item[0], str):
            raise QueryError("order must be a list of [field, \"asc\"|\"desc\"] pairs")
        direction = str(item[1]).lower() if len(item) > 1 else "asc"
        if direction not in ("asc", "desc"):
            raise QueryError(f"order direction must be asc or desc (got {item[1]!r})")
        order.append((OFFER_ALIASES.get(item[0], item[0]), direction == "desc"))
    filters = [(OFFER_ALIASES.get(n, n), op, v) for n, op, v in parse_filters(body, SEARCH_CONTROL_KEYS)]
    return SearchQuery(tuple(filters), tuple(order), offer_type, limit, storage)


class OfferTable:
    """Every ask of the marketplace as numpy columns, drawn from the seed in one vectorised pass
    (100,000 asks take a fraction of a second); rows are rendered only for search results."""

    def __init__(self, seed: int, count: int):
        rng = np.random.default_rng([seed, 0x7A57])
        n = max(int(count), 0)
        self.size = n
        gpu_names = [g.vast_name for g in SIM_GPUS]
        traits = [GPU_TRAITS.get(name, _DEFAULT_TRAITS) for name in gpu_names]
        weights = np.array([g.weight for g in SIM_GPUS], dtype=float)
        gpu = rng.choice(len(SIM_GPUS), size=n, p=weights / weights.sum())
        # GPUs per offer: a per-model distribution, drawn with one uniform per offer.
        counts_table = np.array([t.counts for t in traits])
        cumulative = np.cumsum(np.array([t.count_weights for t in traits]), axis=1)
        cumulative /= cumulative[:, -1:]
        pick = (rng.random(n)[:, None] > cumulative[gpu]).sum(axis=1)
        num_gpus = counts_table[gpu, np.minimum(pick, counts_table.shape[1] - 1)]
        machine_gpus = np.minimum(num_gpus * rng.choice([1, 1, 2], size=n), 8)
        machine_gpus = np.maximum(machine_gpus, num_gpus)
        location = rng.choice(len(SIM_LOCATIONS), size=n, p=np.array(_LOCATION_WEIGHTS) / sum(_LOCATION_WEIGHTS))
        low = np.array([g.price_low for g in SIM_GPUS])[gpu]
        high = np.array([g.price_high for g in SIM_GPUS])[gpu]
        per_gpu = np.round(low + rng.random(n) * (high - low), 4)
        dph_base = np.round(per_gpu * num_gpus, 6)
        driver = rng.integers(0, len(DRIVERS), size=n)
        cores_per_gpu = rng.choice([4, 6, 8, 12, 16], size=n)
        cpu_cores = cores_per_gpu * machine_gpus
        ram_per_gpu_gb = rng.choice([32, 48, 64, 128], size=n)
        compute = np.array([t.compute_cap for t in traits])[gpu]
        datacenter = rng.random(n) < np.array([t.datacenter_share for t in traits])[gpu]
        rented_elsewhere = rng.random(n) < 0.08
        offline = rng.random(n) < 0.02
        pci_gen = rng.choice([3, 4, 5], size=n, p=[0.2, 0.6, 0.2])
        self.columns: dict[str, np.ndarray] = {
            "id": 10_000_000 + np.arange(n, dtype=np.int64) * 8 + rng.integers(0, 8, size=n),
            "machine_id": 10_000 + rng.permutation(n).astype(np.int64) * 3 + rng.integers(0, 3, size=n),
            "host_id": 100_000 + rng.integers(0, max(1, n // 4), size=n),
            "gpu": gpu,
            "num_gpus": num_gpus.astype(np.int64),
            "machine_gpus": machine_gpus.astype(np.int64),
            "location": location,
            "dph_base": dph_base,
            "min_bid": np.round(dph_base * rng.uniform(0.35, 0.7, size=n), 6),
            "storage_cost": np.round(rng.uniform(0.05, 0.3, size=n), 4),
            "driver": driver,
            "cpu_cores": cpu_cores.astype(np.int64),
            "cpu_cores_effective": np.round(cpu_cores * num_gpus / machine_gpus, 1),
            "cpu_ram": (ram_per_gpu_gb * num_gpus * 1024).astype(np.int64),
            "cpu_ghz": np.round(rng.uniform(2.0, 3.8, size=n), 1),
            "cpu_name": rng.integers(0, len(CPU_NAMES), size=n),
            "disk_space": np.round(rng.uniform(50.0, 2000.0, size=n), 1),
            "disk_bw": np.round(rng.uniform(500.0, 6000.0, size=n), 1),
            "disk_name": rng.integers(0, len(DISK_NAMES), size=n),
            "mobo_name": rng.integers(0, len(MOBO_NAMES), size=n),
            "inet_up": np.round(rng.uniform(100.0, 10000.0, size=n), 1),
            "inet_down": np.round(rng.uniform(100.0, 10000.0, size=n), 1),
            "inet_up_cost": np.round(rng.uniform(0.0, 0.02, size=n), 5),
            "inet_down_cost": np.round(rng.uniform(0.0, 0.02, size=n), 5),
            "reliability": np.round(rng.uniform(0.9, 0.9999, size=n), 4),
            "compute_cap": compute.astype(np.int64),
            "direct_port_count": np.where(rng.random(n) < 0.1, 0, rng.integers(1, 200, size=n)).astype(np.int64),
            "pci_gen": pci_gen.astype(np.int64),
            "pcie_bw": np.round(np.array([0.0, 0.0, 0.0, 12.5, 25.0, 50.0])[pci_gen] * rng.uniform(0.85, 1.0, size=n), 1),
            "gpu_lanes": rng.choice([8, 16], size=n, p=[0.2, 0.8]).astype(np.int64),
            "gpu_mem_bw": np.round(np.array([t.mem_bw for t in traits])[gpu] * rng.uniform(0.95, 1.0, size=n), 1),
            "gpu_max_power": np.array([t.max_power for t in traits])[gpu].astype(np.int64),
            "gpu_max_temp": rng.integers(83, 91, size=n).astype(np.int64),
            "bw_nvlink": np.round(np.array([t.nvlink for t in traits])[gpu] * (num_gpus > 1), 1),
            "dlperf": np.round(np.array([t.dlperf for t in traits])[gpu] * num_gpus * rng.uniform(0.85, 1.05, size=n), 2),
            "total_flops": np.round(np.array([t.tflops for t in traits])[gpu] * num_gpus, 2),
            "duration": np.round(rng.uniform(3.0, 180.0, size=n) * 86400.0, 1),
            "listed_days_ago": np.round(rng.uniform(1.0, 400.0, size=n), 3),
            "verification": rng.choice(len(VERIFICATIONS), size=n, p=VERIFICATION_WEIGHTS),
            "external": rng.random(n) < 0.05,
            "hosting_type": datacenter.astype(np.int64),
            "rented": rented_elsewhere,
            "base_rentable": ~(rented_elsewhere | offline),
            "static_ip": rng.random(n) < 0.6,
            "vms_enabled": rng.random(n) < 0.2,
            "gpu_display_active": rng.random(n) < 0.05,
            "os_version": rng.integers(0, len(OS_VERSIONS), size=n),
            "credit_discount_max": rng.choice([0.1, 0.2, 0.3, 0.4], size=n),
        }
        self.gpu_names = np.array([normalize_text(g) for g in gpu_names], dtype=object)
        self.display_gpu_names = gpu_names
        self.gpu_memory = np.array([g.memory_mb for g in SIM_GPUS], dtype=np.int64)
        self.listed_epoch = 1_767_225_600.0  # 2026-01-01: listings are dated before it

    @property
    def ids(self) -> np.ndarray:
        return self.columns["id"]

    def rented(self, rentable: np.ndarray) -> np.ndarray:
        """Rented by someone else, or held by one of our instances (listed, but no longer rentable)."""
        return self.columns["rented"] | (self.columns["base_rentable"] & ~rentable)

    def index_of(self, ask_id: int) -> int | None:
        ids = self.ids
        i = int(np.searchsorted(ids, ask_id))
        return i if i < len(ids) and int(ids[i]) == ask_id else None

    def priced(self, offer_type: str, storage_gb: float) -> dict[str, np.ndarray]:
        """The columns that depend on the query: prices for the contract type and storage."""
        c = self.columns
        storage_hour = np.round(c["storage_cost"] * storage_gb / HOURS_PER_MONTH, 6)
        base = c["min_bid"] if offer_type == "bid" else c["dph_base"]
        dph_total = np.round(base + storage_hour, 6)
        safe_total = np.where(dph_total > 0, dph_total, math.nan)
        discounted_hourly = np.round(dph_total * c["credit_discount_max"], 6)
        reliability = c["reliability"]
        return {
            "storage_total_cost": storage_hour,
            "dph_total": dph_total,
            "dlperf_per_dphtotal": np.round(c["dlperf"] / safe_total, 3),
            "flops_per_dphtotal": np.round(c["total_flops"] / safe_total, 3),
            "score": np.round(c["dlperf"] / safe_total * reliability, 4),
            "discount_rate": c["credit_discount_max"],
            "discounted_hourly": discounted_hourly,
            "discounted_dph_total": np.round(dph_total - discounted_hourly, 6),
            "vram_costperhour": np.round(dph_total / (self.gpu_memory[c["gpu"]] * c["num_gpus"] / 1024.0), 6),
        }

    def column(self, name: str, priced: dict[str, np.ndarray], rentable: np.ndarray, value_hint: Any = None) -> Column:
        """The Column a search filter or order on `name` reads; QueryError when there is none."""
        c = self.columns
        if name in priced:
            return Column("num", priced[name].astype(float))
        if name == "gpu_name":
            return Column("str", self.gpu_names[c["gpu"]])
        if name == "geolocation":
            places = np.array([normalize_text(place) for _, place in SIM_LOCATIONS], dtype=object)
            codes = np.array([normalize_text(code) for code, _ in SIM_LOCATIONS], dtype=object)
            return Column("str", places[c["location"]], codes[c["location"]])
        if name == "verification":
            return Column("str", np.array(VERIFICATIONS, dtype=object)[c["verification"]])
        if name == "verified":
            return Column("bool", (c["verification"] == 0).astype(float))
        if name == "datacenter":
            return Column("bool", (c["hosting_type"] == 1).astype(float))
        if name == "rentable":
            return Column("bool", rentable.astype(float))
        if name == "rented":
            return Column("bool", self.rented(rentable).astype(float))
        if name == "driver_version":
            number = _driver_hint(value_hint)
            if number is not None:  # the CLI sends "535.86.05" as 535086005
                return Column("num", np.array([driver_number(v) for _, v in DRIVERS], dtype=float)[c["driver"]])
            return Column("str", np.array([normalize_text(v) for _, v in DRIVERS], dtype=object)[c["driver"]])
        if name == "driver_vers":
            return Column("num", np.array([driver_number(v) for _, v in DRIVERS], dtype=float)[c["driver"]])
        if name == "cuda_max_good":
            return Column("num", np.array([cuda for cuda, _ in DRIVERS], dtype=float)[c["driver"]])
        if name == "os_version":
            return Column("str", np.array(OS_VERSIONS, dtype=object)[c["os_version"]])
        if name == "gpu_ram":
            return Column("num", self.gpu_memory[c["gpu"]].astype(float))
        if name == "gpu_total_ram":
            return Column("num", (self.gpu_memory[c["gpu"]] * c["num_gpus"]).astype(float))
        if name == "gpu_frac":
            return Column("num", (c["num_gpus"] / c["machine_gpus"]).astype(float))
        if name in ("id", "ask_contract_id"):
            return Column("num", c["id"].astype(float))
        if name in ("external", "static_ip", "vms_enabled", "gpu_display_active"):
            return Column("bool", c[name].astype(float))
        if name == "has_avx":
            return Column("num", np.ones(self.size))
        if name in ("cpu_arch", "gpu_arch"):
            return Column("str", np.full(self.size, "amd64" if name == "cpu_arch" else "nvidia", dtype=object))
        if name in ("cpu_name", "disk_name", "mobo_name"):
            names = {"cpu_name": CPU_NAMES, "disk_name": DISK_NAMES, "mobo_name": MOBO_NAMES}[name]
            return Column("str", np.array([normalize_text(v) for v in names], dtype=object)[c[name]])
        if name in NUMERIC_OFFER_COLUMNS:
            return Column("num", c[name].astype(float))
        if name == "cluster_id":
            return Column("num", np.full(self.size, math.nan))
        raise QueryError(f"{name} is not a valid search key")

    def render(self, indices: np.ndarray, priced: dict[str, np.ndarray], rentable: np.ndarray, offer_type: str, now: float) -> list[dict[str, Any]]:
        """Offer objects (the documented keys and numeric types) for the given rows, in that order."""
        c = self.columns
        idx = np.asarray(indices, dtype=np.int64)

        def take(name: str) -> list[Any]:
            return c[name][idx].tolist()

        def take_priced(name: str) -> list[Any]:
            return priced[name][idx].tolist()

        gpu = c["gpu"][idx]
        location = c["location"][idx]
        driver = c["driver"][idx]
        ids, machines, num_gpus = take("id"), take("machine_id"), take("num_gpus")
        gpu_ram = self.gpu_memory[gpu].tolist()
        rentable_now = rentable[idx].tolist()
        rented_now = self.rented(rentable)[idx].tolist()
        dph_base, storage_hour, dph_total = take("dph_base"), take_priced("storage_total_cost"), take_priced("dph_total")
        discounted_hourly, discounted_total = take_priced("discounted_hourly"), take_priced("discounted_dph_total")
        inet_up_cost, inet_down_cost = take("inet_up_cost"), take("inet_down_cost")
        min_bid = take("min_bid")
        listed = (self.listed_epoch - c["listed_days_ago"][idx] * 86400.0).tolist()
        durations = take("duration")
        verification = c["verification"][idx].tolist()
        is_bid = offer_type == "bid"
        rows: list[dict[str, Any]] = []
        columns = zip(
            ids, machines, num_gpus, gpu.tolist(), location.tolist(), driver.tolist(), gpu_ram, rentable_now, rented_now,
            dph_base, storage_hour, dph_total, discounted_hourly, discounted_total, min_bid, listed, durations, verification,
            take("host_id"), take("machine_gpus"), take("cpu_cores"), take("cpu_cores_effective"), take("cpu_ghz"),
            take("cpu_name"), take("cpu_ram"), take("credit_discount_max"), take("direct_port_count"), take("disk_bw"),
            take("disk_name"), take("disk_space"), take("dlperf"), take_priced("dlperf_per_dphtotal"), take("external"),
            take_priced("flops_per_dphtotal"), take("gpu_display_active"), take("gpu_lanes"), take("gpu_mem_bw"),
            take("gpu_max_power"), take("gpu_max_temp"), take("hosting_type"), take("inet_down"), inet_down_cost,
            take("inet_up"), inet_up_cost, take("mobo_name"), take("os_version"), take("pci_gen"), take("pcie_bw"),
            take("reliability"), take_priced("score"), take("static_ip"), take("storage_cost"), take("total_flops"),
            take_priced("vram_costperhour"), take("vms_enabled"), take("bw_nvlink"), take("compute_cap"),
            take_priced("discount_rate"), strict=True,
        )
        for rank, (
            ask_id, machine, n_gpus, g, loc, drv, vram, is_rentable, is_rented, base, disk_hour, total, disc_hour, disc_total,
            bid, start, duration, veri, host, machine_gpus, cores, cores_eff, ghz, cpu, ram, discount_max, ports, disk_bw,
            disk, disk_space, dlperf, dlperf_usd, external, flops_usd, display, lanes, mem_bw, power, temp, hosting, down,
            down_cost, up, up_cost, mobo, os_version, pci_gen, pcie_bw, reliability, score, static_ip, storage_cost, flops,
            vram_cost, vms, nvlink, compute_cap, discount_rate,
        ) in enumerate(columns, start=1):
            cuda, driver_version = DRIVERS[drv]
            place = SIM_LOCATIONS[loc][1]
            rows.append({
                "id": ask_id, "ask_contract_id": ask_id, "bundle_id": 900_000_000 + ask_id % 100_000_000, "bundled_results": None,
                "bw_nvlink": nvlink, "compute_cap": compute_cap, "cpu_arch": "amd64", "cpu_cores": cores,
                "cpu_cores_effective": cores_eff, "cpu_ghz": ghz, "cpu_name": CPU_NAMES[cpu], "cpu_ram": ram,
                "credit_discount_max": discount_max, "cuda_max_good": cuda, "direct_port_count": ports, "disk_bw": disk_bw,
                "disk_name": DISK_NAMES[disk], "disk_space": disk_space, "dlperf": dlperf, "dlperf_per_dphtotal": dlperf_usd,
                "dph_base": base, "dph_total": total, "driver_version": driver_version,
                "driver_vers": driver_number(driver_version), "duration": duration, "end_date": round(now + duration, 1),
                "external": external, "flops_per_dphtotal": flops_usd, "geolocation": place, "geolocode": 1000 + loc * 37,
                "gpu_arch": "nvidia", "gpu_display_active": display, "gpu_frac": round(n_gpus / machine_gpus, 4),
                "gpu_ids": [machine * 10 + k for k in range(n_gpus)], "gpu_lanes": lanes, "gpu_mem_bw": mem_bw,
                "gpu_name": self.display_gpu_names[g], "gpu_ram": vram, "gpu_total_ram": vram * n_gpus,
                "gpu_max_power": power, "gpu_max_temp": temp, "has_avx": 1, "host_id": host, "hosting_type": hosting,
                "hostname": None, "inet_down": down, "inet_down_cost": down_cost, "inet_up": up, "inet_up_cost": up_cost,
                "is_bid": is_bid, "logo": "/static/logos/vastai_small2.png", "machine_id": machine, "min_bid": bid,
                "mobo_name": MOBO_NAMES[mobo], "num_gpus": n_gpus, "os_version": OS_VERSIONS[os_version], "pci_gen": pci_gen,
                "pcie_bw": pcie_bw, "public_ipaddr": public_ip(machine), "reliability": reliability,
                "reliability_mult": round(reliability**2, 4), "rentable": is_rentable, "rented": is_rented, "score": score,
                "start_date": start, "static_ip": static_ip, "storage_cost": storage_cost, "storage_total_cost": disk_hour,
                "total_flops": flops, "verification": VERIFICATIONS[veri], "vericode": 1 if veri == 0 else 0,
                "vram_costperhour": vram_cost, "webpage": None, "vms_enabled": vms, "expected_reliability": reliability,
                "is_vm_deverified": False, "resource_type": "gpu", "cluster_id": None, "rn": rank,
                "dph_total_adj": total, "reliability2": reliability, "discount_rate": discount_rate,
                "discounted_hourly": disc_hour, "discounted_dph_total": disc_total,
                "search": {"gpuCostPerHour": base if not is_bid else bid, "diskHour": disk_hour, "totalHour": total,
                           "discountTotalHour": disc_hour, "discountedTotalPerHour": disc_total},
                "instance": {"gpuCostPerHour": base if not is_bid else bid, "diskHour": disk_hour, "totalHour": total,
                             "discountTotalHour": disc_hour, "discountedTotalPerHour": disc_total},
                "time_remaining": "", "time_remaining_isbid": "",
                "internet_up_cost_per_tb": round(up_cost * 1000, 4), "internet_down_cost_per_tb": round(down_cost * 1000, 4),
            })
        return rows


NUMERIC_OFFER_COLUMNS = frozenset({
    "machine_id", "host_id", "num_gpus", "dph_base", "min_bid", "storage_cost", "cpu_cores", "cpu_cores_effective",
    "cpu_ram", "cpu_ghz", "disk_space", "disk_bw", "inet_up", "inet_down", "inet_up_cost", "inet_down_cost",
    "reliability", "compute_cap", "direct_port_count", "pci_gen", "pcie_bw", "gpu_lanes", "gpu_mem_bw",
    "gpu_max_power", "gpu_max_temp", "bw_nvlink", "dlperf", "total_flops", "duration", "hosting_type",
    "credit_discount_max",
})


def _driver_hint(value: Any) -> int | None:
    """Whether a driver_version filter value is numeric (535086005, "535.86.05"): compare as numbers."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return driver_number(text)


# ----- instances ---------------------------------------------------------------------------------


def vast_status(phase: str) -> tuple[str | None, str, str, str | None]:
    """(actual_status, intended_status, cur_state, status_msg) for a simulated phase (pure)."""
    if phase == Phase.CREATING:
        return None, "running", "running", None
    if phase == Phase.LOADING:
        return "loading", "running", "running", "Pulling image and starting container"
    if phase == Phase.RUNNING:
        return "running", "running", "running", "success, running"
    if phase == Phase.STOPPING:
        return "running", "stopped", "stopped", "Stopping container"
    if phase == Phase.STOPPED:
        return "stopped", "stopped", "stopped", "Container stopped"
    if phase == Phase.STARTING:
        return "loading", "running", "running", "Starting container"
    if phase == Phase.REBOOTING:
        return "rebooting", "running", "running", "Rebooting container"
    return None, "stopped", "unloaded", "Instance destroyed"


# Rows' columns that are computed per request: v1 refuses them in select_filters and order_by.
COMPUTED_INSTANCE_COLUMNS = frozenset({"dph_total", "num_gpus", "duration", "uptime_mins", "dlperf_per_dphtotal",
                                       "flops_per_dphtotal", "vram_costperhour"})
# Offer fields an instance row repeats from the machine it runs on.
OFFER_FIELDS_ON_INSTANCE = (
    "machine_id", "bundle_id", "cpu_arch", "cpu_cores", "cpu_cores_effective", "cpu_name", "cpu_ram", "gpu_name",
    "gpu_arch", "gpu_ram", "gpu_frac", "gpu_lanes", "gpu_mem_bw", "bw_nvlink", "disk_name", "disk_bw", "geolocation",
    "verification", "host_id", "hosting_type", "min_bid", "dph_base", "dlperf", "total_flops", "score", "os_version",
    "mobo_name", "pci_gen", "pcie_bw", "num_gpus", "logo", "webpage", "storage_cost", "credit_discount_max",
    "external", "inet_up", "inet_down", "inet_up_cost", "inet_down_cost", "cuda_max_good", "driver_version",
    "compute_cap", "static_ip", "direct_port_count", "reliability2", "time_remaining", "time_remaining_isbid",
)
INSTANCE_COLUMNS: tuple[str, ...] = (
    "id", "actual_status", "intended_status", "cur_state", "next_state", "label", "template_id", "template_hash_id",
    "template_name", "image_uuid", "image_args", "image_runtype", "extra_env", "onstart", "jupyter_token",
    "status_msg", "public_ipaddr", "local_ipaddrs", "ssh_host", "ssh_idx", "ssh_port", "machine_dir_ssh_port",
    "ports", "direct_port_start", "direct_port_end", "start_date", "end_date", "uptime_mins", "duration",
    "cpu_util", "mem_limit", "mem_usage", "vmem_usage", "gpu_totalram", "gpu_util", "gpu_temp", "disk_space",
    "disk_util", "disk_usage", "rentable", "is_bid", "dph_total", "dlperf_per_dphtotal", "flops_per_dphtotal",
    "storage_total_cost", "vram_costperhour", "credit_balance", "credit_discount", "client_run_time",
    "host_run_time", "country_code", "volume_info", "search", "instance", *OFFER_FIELDS_ON_INSTANCE,
)


@dataclass(frozen=True, slots=True)
class CreateSpec:
    image: str | None
    template_hash_id: str | None
    disk: float
    label: str | None
    runtype: str
    price: float | None
    env: list[list[str]]
    onstart: str | None
    vm: bool
    cancel_unavail: bool
    target_state: str


def env_pairs(env: Any) -> list[list[str]] | None:
    """`env` as the CLI (dict) or the OpenAPI (docker flags string) sends it -> [[name, value], ...].
    Docker flags other than `-e` (ports, hostname) are not environment variables. None if invalid."""
    if env is None:
        return []
    pairs: list[list[str]] = []
    if isinstance(env, dict):
        for name, value in env.items():
            if not str(name).startswith("-"):
                pairs.append([str(name), "" if value is None else str(value)])
        return pairs
    if isinstance(env, str):
        try:
            tokens = shlex.split(env)
        except ValueError:
            return None
        for i, token in enumerate(tokens):
            if token == "-e" and i + 1 < len(tokens) and "=" in tokens[i + 1]:
                name, _, value = tokens[i + 1].partition("=")
                pairs.append([name, value])
        return pairs
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_create_body(body: Any) -> CreateSpec | tuple[str, str]:
    """The accept-ask body -> CreateSpec, or (error code, message) as Vast answers a 400 (pure)."""
    def invalid(detail: str) -> tuple[str, str]:
        return "invalid_args", f"error 400/3467: Invalid args: {detail}"

    if not isinstance(body, dict):
        return invalid("request body must be a JSON object")
    image, template = body.get("image"), body.get("template_hash_id")
    if not (isinstance(image, str) and image.strip()) and not (isinstance(template, str) and template.strip()):
        return invalid("'image' is required unless 'template_hash_id' is given")
    disk = body.get("disk", 10.0)
    if disk is None:
        disk = 10.0
    if not _is_number(disk) or disk < MIN_DISK_GB:
        return invalid(f"'disk' must be a number of GB, at least {MIN_DISK_GB:g}")
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH):
        return invalid(f"'label' must be a string of at most {MAX_LABEL_LENGTH} characters")
    runtype = body.get("runtype") or "ssh"
    if not isinstance(runtype, str) or not set(runtype.split()) <= RUNTYPE_TOKENS or not runtype.split():
        return invalid(f"'runtype' {runtype!r} is not one of ssh, jupyter, args, ssh_proxy, ssh_direct, jupyter_proxy, jupyter_direct")
    price = body.get("price")
    if price is not None and (not _is_number(price) or not MIN_BID_PRICE <= price <= MAX_BID_PRICE):
        return "invalid_price", f"error 400/3467: Invalid price: 'price' must be between {MIN_BID_PRICE} and {MAX_BID_PRICE:g} $/hr"
    pairs = env_pairs(body.get("env"))
    if pairs is None:
        return invalid("'env' must be an object or a string of docker flags")
    onstart = body.get("onstart")
    if onstart is not None and not isinstance(onstart, str):
        return invalid("'onstart' must be a string")
    target_state = body.get("target_state") or "running"
    if target_state not in ("running", "stopped"):
        return invalid("'target_state' must be running or stopped")
    return CreateSpec(
        image=image.strip() if isinstance(image, str) and image.strip() else None,
        template_hash_id=template if isinstance(template, str) and template.strip() else None,
        disk=float(disk),
        label=label,
        runtype=runtype,
        price=float(price) if price is not None else None,
        env=pairs,
        onstart=onstart,
        vm=bool(body.get("vm")),
        cancel_unavail=bool(body.get("cancel_unavail")),
        target_state=target_state,
    )


def encode_token(values: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps({"values": values}).encode()).decode()


def decode_token(token: str) -> dict[str, Any] | None:
    """The `values` of an after_token, or None when it is not one of ours."""
    try:
        body = json.loads(base64.b64decode(token.encode(), validate=True).decode())
    except (binascii.Error, UnicodeError, ValueError):
        return None
    values = body.get("values") if isinstance(body, dict) else None
    return values if isinstance(values, dict) else None


class _Descending:
    """Reverses the order of what it wraps, for mixed asc/desc sort keys."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def row_sort_key(values: dict[str, Any], order: Sequence[tuple[str, bool]]) -> tuple[Any, ...]:
    """The keyset position of a row (or of a token's values), in PostgreSQL's order: nulls last
    ascending, first descending."""
    parts: list[Any] = []
    for column, descending in order:
        value = values.get(column)
        if isinstance(value, list | dict):
            value = json.dumps(value, sort_keys=True)
        part = (value is None, value if value is not None else 0)
        parts.append(_Descending(part) if descending else part)
    return tuple(parts)


@dataclass
class Account:
    key: str
    user_id: int
    credit: float
    ssh_keys: list[dict[str, Any]] = field(default_factory=list)  # {"id", "key", "created_at"}


@dataclass(frozen=True, slots=True)
class Call:
    account: str
    fault: str | None


def vast_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    # JSONResponse sends exactly "application/json", which the CLI's search compares as a string.
    return JSONResponse(body, status_code=status, headers=headers)


def vast_error(status: int, error: str, msg: str, **extra: Any) -> JSONResponse:
    return vast_json({"success": False, "error": error, "msg": msg, **extra}, status)


def _parse_int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 19 else None


def _proxy_page(status: int, title: str) -> Response:
    html = f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return Response(html, status_code=status, media_type="text/html")


# ----- the sandbox -------------------------------------------------------------------------------


class VastSandbox(VendorSandbox):
    name = "vast"

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
        self.taken: dict[int, str] = {}  # ask id -> instance id holding it
        self.accounts: dict[str, Account] = {}
        self.search_quota = search_quota
        self._searches: Counter[tuple[str, str]] = Counter()
        self._ssh_key_ids = 1000

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

    async def open_call(
        self, request: Request, endpoint: str, extra_faults: tuple[str, ...] = (), *, anonymous: str | None = None,
        instance_id: str | None = None,
    ) -> Call | Response:
        """Authenticate, then latency / rate limit / fault draw. `anonymous` names the 401 answer for a
        missing key: None means a key is required; "allow" lets the call through as the client IP."""
        key, valid = self.read_key(request)
        if key is not None and not valid:
            if anonymous is not None:  # search_offers.yaml documents a 404 for a bad key
                return vast_json({"error": "auth_error", "msg": MSG_INVALID_KEY}, 404)
            return vast_error(401, "auth_error", MSG_INVALID_KEY)
        if key is None:
            if anonymous is None:
                return vast_error(401, "auth_error", MSG_INVALID_KEY)
            key = f"anonymous:{request.client.host if request.client else 'unknown'}"
        gate = await self.before_call(key, endpoint, extra_faults, instance_id=instance_id)
        if gate.response is not None:
            return gate.response
        return Call(key, gate.fault)

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
        app = super().create_app()
        app.router.redirect_slashes = False

        def route(path: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            """Serve `path` with and without its trailing slash: clients use both."""
            bare = path.rstrip("/")

            def register(handler: Callable[..., Any]) -> Callable[..., Any]:
                for variant in (bare, bare + "/"):
                    app.add_api_route(variant, handler, methods=methods, include_in_schema=False)
                return handler

            return register

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            if request.url.path.startswith("/_sandbox"):
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
            if exc.status_code == 405:
                return vast_error(405, "method_not_allowed", "Method Not Allowed")
            if exc.status_code == 404:
                return vast_error(404, "not_found", "Not Found")
            return vast_error(exc.status_code, "invalid_request", str(exc.detail))

        async def body_of(request: Request) -> tuple[Any, bool]:
            """(parsed JSON body, ok). An empty body is {} (the CLI sends {} on PUT/DELETE)."""
            raw = await request.body()
            if not raw.strip():
                return {}, True
            try:
                return json.loads(raw), True
            except (ValueError, UnicodeDecodeError):
                return None, False

        # ----- offers ---------------------------------------------------------------------------
        @route(f"{API_V0}/bundles/", ["POST"])
        async def search_offers(request: Request) -> Response:
            async def read() -> Any:
                body, ok = await body_of(request)
                if not ok:
                    raise ValueError("invalid json")
                return body

            return await self._search_route(request, read)

        @route(f"{API_V0}/bundles/", ["GET"])
        async def search_offers_legacy(request: Request) -> Response:
            async def read() -> Any:
                return json.loads(request.query_params.get("q") or "{}")

            return await self._search_route(request, read)

        @route(f"{API_V0}/search/asks/", ["PUT"])
        async def search_asks(request: Request) -> Response:
            async def read() -> Any:
                body, ok = await body_of(request)
                if not ok:
                    raise ValueError("invalid json")
                return body

            return await self._search_route(request, read, select_cols=True)

        @route(f"{API_V0}/gpu_names/unique/", ["GET"])
        async def gpu_names(request: Request) -> Response:
            call = await self.open_call(request, "gpu_names", anonymous="allow")
            if isinstance(call, Response):
                return call
            return vast_json({"gpu_names": sorted({g.vast_name for g in SIM_GPUS})})

        # ----- create ------------------------------------------------------------------------------
        @route(API_V0 + "/asks/{ask_id}/", ["PUT"])
        async def accept_ask(ask_id: str, request: Request) -> Response:
            call = await self.open_call(request, "create", CREATE_FAULTS)
            if isinstance(call, Response):
                return call
            body, ok = await body_of(request)
            ask = _parse_int(ask_id)
            if ask is None:
                return vast_error(400, "invalid_args", "error 400/3467: Invalid args: 'id' is required and must be a valid offer ID", ask_id=None)
            if not ok:
                return vast_error(400, "invalid_args", "error 400/3467: Invalid args: Invalid json body", ask_id=ask)
            spec = parse_create_body(body)
            if isinstance(spec, tuple):
                return vast_error(400, spec[0], spec[1], ask_id=ask)
            index = self.offers.index_of(ask)
            if index is None or not self.offers.columns["base_rentable"][index]:
                return vast_error(404, "invalid_args", f"error 404/3603: no_such_ask Instance type by id {ask} is not available.", ask_id=ask)
            if not self.rentable_mask()[index]:
                if spec.cancel_unavail:
                    return vast_error(410, "no_such_ask", f"error 410/3907: no_such_ask Instance type {ask} is no longer available.", ask_id=ask)
                return vast_error(404, "invalid_args", f"error 404/3603: no_such_ask Instance type by id {ask} is not available.", ask_id=ask)
            table = self.offers
            offer = table.render(np.array([index]), table.priced("on-demand", spec.disk), self.rentable_mask(), "on-demand", self.now())[0]
            if offer["verification"] == "deverified":
                return vast_error(403, "invalid_args", f"error 403/3586: Offer {ask} is not your own. Hosts can only rent their own machines.", ask_id=ask)
            if spec.price is not None and spec.price < offer["min_bid"]:
                return vast_error(400, "invalid_price", f"error 400/3467: Invalid price: bid {spec.price:g} $/hr is below the minimum bid {offer['min_bid']:g} $/hr for offer {ask}", ask_id=ask)
            if spec.disk > offer["disk_space"]:
                return vast_error(400, "invalid_args", f"error 400/3467: Invalid args: 'disk' {spec.disk:g} GB exceeds the {offer['disk_space']:g} GB offer {ask} has", ask_id=ask)
            account = self.account(call.account)
            if spec.vm and not offer["vms_enabled"]:
                return vast_error(400, "invalid_args", f"error 400/3467: Invalid args: offer {ask} does not support VMs", ask_id=ask)
            if spec.vm and not account.ssh_keys:
                return vast_error(400, "no_ssh_key_for_vm", "error 400/3467: A VM instance needs an SSH key on your account; add one with POST /api/v0/ssh/", ask_id=ask)
            if account.credit <= 0:
                return vast_error(400, "missing_billing", "Your account has no credit; add credit to rent instances", ask_id=ask)
            inst = self._commit(call.account, ask, offer, spec)
            if call.fault == "lost":
                return await self.lost_response()
            return vast_json({"success": True, "new_contract": int(inst.id), "instance_api_key": inst.data["instance_api_key"]})

        # ----- instance lists -------------------------------------------------------------------
        @route(f"{API_V1}/instances/", ["GET"])
        async def list_instances_v1(request: Request) -> Response:
            call = await self.open_call(request, "list", ("malformed",))
            if isinstance(call, Response):
                return call
            page = self.rows_page(call.account, dict(request.query_params))
            if isinstance(page, Response):
                return page
            if call.fault == "malformed":
                return self.malformed(page, "instances")
            return vast_json(page)

        @route(f"{API_V0}/instances/", ["GET"])
        async def list_instances_v0(request: Request) -> Response:
            call = await self.open_call(request, "list", ("malformed",))
            if isinstance(call, Response):
                return call
            rows = sorted((self.instance_row(i) for i in self.account_instances(call.account)), key=lambda r: r["id"])
            body = {"instances_found": len(rows), "instances": rows}
            if call.fault == "malformed":
                return self.malformed(body, "instances")
            return vast_json(body)

        @route(f"{API_V0}/instances/filters/", ["GET"])
        async def instance_filters(request: Request) -> Response:
            call = await self.open_call(request, "filters")
            if isinstance(call, Response):
                return call
            combos = sorted(
                {(r["actual_status"] or "", r["verification"] or "", r["gpu_name"] or "")
                 for r in (self.instance_row(i) for i in self.account_instances(call.account))}
            )
            return vast_json({"filters": [{"actual_status": a or None, "verification": v or None, "gpu_name": g or None} for a, v, g in combos]})

        # ----- one instance -----------------------------------------------------------------------
        @route(API_V0 + "/instances/reboot/{instance_id}/", ["PUT"])
        async def reboot_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, "manage")
            if isinstance(call, Response):
                return call
            inst = self._own(call.account, instance_id)
            if isinstance(inst, Response):
                return inst
            phase = inst.phase(self.now(), self.faults)
            if phase in (Phase.STOPPED, Phase.STOPPING):
                return vast_error(400, "invalid_args", f"Instance {instance_id} is stopped; start it instead of rebooting")
            if phase == Phase.RUNNING:
                inst.reboot_requested_at = self.now()
            return vast_json({"success": True, "msg": f"Rebooting instance {instance_id}"})

        @route(API_V0 + "/instances/{instance_id}/", ["GET"])
        async def show_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, "get", READ_FAULTS, instance_id=instance_id)
            if isinstance(call, Response):
                return call
            if _parse_int(instance_id) is None:
                return vast_error(400, "invalid_args", "invalid instance_id")
            inst = None if call.fault == "phantom_404" else self.live_instance(call.account, instance_id)
            return vast_json({"instances": self.instance_row(inst) if inst is not None else None})

        @route(API_V0 + "/instances/{instance_id}/", ["PUT"])
        async def manage_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, "manage")
            if isinstance(call, Response):
                return call
            body, ok = await body_of(request)
            if not ok or not isinstance(body, dict):
                return vast_error(400, "invalid_args", "Invalid json body")
            inst = self._own(call.account, instance_id)
            if isinstance(inst, Response):
                return inst
            state, label = body.get("state"), body.get("label", ...)
            if state is None and label is ...:
                return vast_error(400, "invalid_args", "Nothing to change: send 'state' (running|stopped) or 'label'")
            if state is not None and state not in ("running", "stopped"):
                return vast_error(400, "invalid_args", f"'state' must be running or stopped (got {state!r})")
            if label is not ... and label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH):
                return vast_error(400, "label_too_long", f"Label must be a string of at most {MAX_LABEL_LENGTH} characters")
            if state == "running" and self.account(call.account).credit <= 0:
                return vast_error(400, "missing_billing", "Your account has no credit; add credit to start instances")
            now = self.now()
            if state == "stopped" and inst.stopped_at is None:
                inst.phase(now, self.faults)  # settles running_since before the stop
                inst.stopped_at = now
            elif state == "running" and inst.stopped_at is not None:
                inst.stopped_at = None
                inst.start_requested_at = now
                if now >= inst.created_at + inst.ready_after:
                    inst.running_since = now
            if label is not ...:
                inst.data["label"] = label
                inst.marker = label
            return vast_json({"success": True})

        @route(API_V0 + "/instances/{instance_id}/", ["DELETE"])
        async def destroy_instance(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, "delete", DELETE_FAULTS, instance_id=instance_id)
            if isinstance(call, Response):
                return call
            if _parse_int(instance_id) is None:
                return vast_error(400, "invalid_args", "invalid instance_id")
            inst = self.live_instance(call.account, instance_id)
            if inst is None:
                return vast_error(404, "not_found", "Instance not found")
            if call.fault != "ignored_delete":
                self.record_delete(inst)
            return vast_json({"success": True, "msg": f"Instance {instance_id} destroyed."})

        # ----- SSH keys ----------------------------------------------------------------------------
        @route(API_V0 + "/instances/{instance_id}/ssh/", ["POST"])
        async def attach_ssh(instance_id: str, request: Request) -> Response:
            call = await self.open_call(request, "ssh")
            if isinstance(call, Response):
                return call
            inst = self._own(call.account, instance_id)
            if isinstance(inst, Response):
                return inst
            key = await self._ssh_key_from(request)
            if isinstance(key, Response):
                return key
            if not any(k["key"] == key for k in inst.data["ssh_keys"]):
                inst.data["ssh_keys"].append({"id": self._key_id_for(call.account, key), "key": key, "created_at": self.now()})
            return vast_json({"success": True, "msg": "SSH key attached successfully"})

        @route(API_V0 + "/instances/{instance_id}/ssh/{key_id}/", ["DELETE"])
        async def detach_ssh(instance_id: str, key_id: str, request: Request) -> Response:
            call = await self.open_call(request, "ssh")
            if isinstance(call, Response):
                return call
            inst = self._own(call.account, instance_id)
            if isinstance(inst, Response):
                return inst
            kept = [k for k in inst.data["ssh_keys"] if str(k["id"]) != key_id]
            if len(kept) == len(inst.data["ssh_keys"]):
                return vast_error(400, "no_ssh_key", "No ssh key provided")
            inst.data["ssh_keys"] = kept
            return vast_json({"success": True, "msg": "SSH key detached successfully"})

        @route(f"{API_V0}/ssh/", ["GET"])
        async def list_ssh_keys(request: Request) -> Response:
            call = await self.open_call(request, "ssh_list")
            if isinstance(call, Response):
                return call
            account = self.account(call.account)
            return vast_json([self._key_view(account, k, "key") for k in account.ssh_keys])

        @route(f"{API_V0}/ssh/", ["POST"])
        async def create_ssh_key(request: Request) -> Response:
            call = await self.open_call(request, "ssh")
            if isinstance(call, Response):
                return call
            key = await self._ssh_key_from(request)
            if isinstance(key, Response):
                return key
            account = self.account(call.account)
            entry = next((k for k in account.ssh_keys if k["key"] == key), None)
            if entry is None:
                entry = {"id": self._new_key_id(), "key": key, "created_at": self.now()}
                account.ssh_keys.append(entry)
                # "will be added to all your current instances automatically"
                for inst in self.account_instances(call.account):
                    if not any(k["key"] == key for k in inst.data["ssh_keys"]):
                        inst.data["ssh_keys"].append(dict(entry))
            return vast_json({"success": True, "key": self._key_view(account, entry, "public_key")})

        @route(API_V0 + "/ssh/{key_id}/", ["PUT"])
        async def update_ssh_key(key_id: str, request: Request) -> Response:
            call = await self.open_call(request, "ssh")
            if isinstance(call, Response):
                return call
            account = self.account(call.account)
            entry = next((k for k in account.ssh_keys if str(k["id"]) == key_id), None)
            if entry is None:
                return vast_error(400, "no_ssh_key", "No ssh key provided")
            key = await self._ssh_key_from(request)
            if isinstance(key, Response):
                return key
            entry["key"] = key
            return vast_json({"success": True, "key": self._key_view(account, entry, "public_key")})

        @route(API_V0 + "/ssh/{key_id}/", ["DELETE"])
        async def delete_ssh_key(key_id: str, request: Request) -> Response:
            call = await self.open_call(request, "ssh")
            if isinstance(call, Response):
                return call
            account = self.account(call.account)
            kept = [k for k in account.ssh_keys if str(k["id"]) != key_id]
            if len(kept) == len(account.ssh_keys):
                return vast_error(400, "no_ssh_key", "No ssh key provided")
            account.ssh_keys = kept
            return vast_json({"success": True})

        @route(f"{API_V0}/users/current/", ["GET"])
        async def current_user(request: Request) -> Response:
            call = await self.open_call(request, "user")
            if isinstance(call, Response):
                return call
            account = self.account(call.account)
            return vast_json({
                "id": account.user_id,
                "username": f"user{account.user_id}",
                "email": f"user{account.user_id}@example.com",
                "fullname": None,
                "credit": account.credit,
                "balance": 0.0,
                "has_billing": account.credit > 0,
                "ssh_key": account.ssh_keys[-1]["key"] if account.ssh_keys else None,
            })

        return app

    # ----- route helpers ------------------------------------------------------------------------------
    def _own(self, account: str, instance_id: str) -> SimInstance | Response:
        if _parse_int(instance_id) is None:
            return vast_error(400, "invalid_args", "invalid instance_id")
        inst = self.live_instance(account, instance_id)
        if inst is None:
            return vast_error(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst

    async def _ssh_key_from(self, request: Request) -> str | Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        key = body.get("ssh_key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key.strip():
            return vast_error(400, "no_ssh_key", "No ssh key provided")
        key = key.strip()
        if not SSH_KEY_PATTERN.match(key):
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
