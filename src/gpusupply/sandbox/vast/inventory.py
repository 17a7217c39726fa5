"""The marketplace: every ask as numpy columns drawn from the seed, priced and rendered for a
search (`/bundles/` queries, parsed here)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusupply.sandbox.inventory import SIM_GPUS, SIM_LOCATIONS
from gpusupply.sandbox.vast.hardware import (
    CPU_NAMES,
    DEFAULT_TRAITS,
    DISK_NAMES,
    DRIVERS,
    GPU_TRAITS,
    LOCATION_WEIGHTS,
    MOBO_NAMES,
    OS_VERSIONS,
    VERIFICATION_WEIGHTS,
    VERIFICATIONS,
    driver_number,
    public_ip,
)
from gpusupply.sandbox.vast.query import Column, QueryError, coerce_scalar, normalize_text, parse_filters

DEFAULT_SEARCH_LIMIT = 1000
MAX_SEARCH_LIMIT = 10_000
DEFAULT_ALLOCATED_STORAGE = 8.0  # GiB priced into dph_total when the query gives none
HOURS_PER_MONTH = 730.0
OFFER_TYPES = {"on-demand": "on-demand", "ondemand": "on-demand", "bid": "bid", "interruptible": "bid", "reserved": "reserved"}
SEARCH_CONTROL_KEYS = frozenset({"order", "type", "limit", "allocated_storage", "disable_bundling"})
OFFER_ALIASES = {
    "cuda_vers": "cuda_max_good",
    "dph": "dph_total",
    "dlperf_usd": "dlperf_per_dphtotal",
    "flops_usd": "flops_per_dphtotal",
    "display_active": "gpu_display_active",
    "ubuntu_version": "os_version",
}

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
        traits = [GPU_TRAITS.get(name, DEFAULT_TRAITS) for name in gpu_names]
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
        location = rng.choice(len(SIM_LOCATIONS), size=n, p=np.array(LOCATION_WEIGHTS) / sum(LOCATION_WEIGHTS))
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
