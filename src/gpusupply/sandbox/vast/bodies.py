"""What instance routes read and write: status words per phase, instance columns, create bodies,
and the v1 list's keyset paging tokens and sort keys."""

from __future__ import annotations

import base64
import binascii
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpusupply.sandbox.common import (
    Phase,
)

V1_DEFAULT_LIMIT = 25
V1_MAX_LIMIT = 25
V1_NONPOSITIVE_LIMIT = 5  # "<=0 is treated as 5"
MAX_LABEL_LENGTH = 256
MIN_DISK_GB = 8.0
MIN_BID_PRICE, MAX_BID_PRICE = 0.001, 128.0
RUNTYPE_TOKENS = frozenset(
    {"ssh", "jupyter", "args", "ssh_proxy", "ssh_direct", "ssh_direc", "jupyter_proxy", "jupyter_direct", "jupyter_direc"}
)

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
