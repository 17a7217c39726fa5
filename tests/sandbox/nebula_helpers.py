"""Nebula's documented response shapes (reference/vendor-apis.md section 3, seed 003) as checkable
specs, the documented example bodies they must accept, and small client helpers for the tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.nebula import NebulaSandbox
from gpusupply.sandbox.runner import ServerThread

API = "/api/v1"
NUMBER = (int, float)

# A field spec is a type (or tuple of types) or a compiled regex the string value must match.
Spec = dict[str, Any]

ENVELOPE: Spec = {"status": re.compile(r"^(success|failed)$"), "message": str}
PRODUCT: Spec = {
    "id": str, "dc_id": int, "product_type": re.compile(r"^(Container|Virtual Machine)$"), "region": str,
    "price_per_hour": NUMBER, "cpu": int, "ram": int, "gpu": str, "gpu_type": str, "gpu_count": int,
    "disk_size": int, "ephemeral": int, "stock": int, "cycle": str, "is_available": bool,
}
IMAGE: Spec = {"id": str, "dc_id": int, "os_name": str, "os_type": str, "region": str}
INSTANCE_ROW: Spec = {
    "id": str, "region": str, "product_type": str, "host_name": str, "cpu_cores": int, "ram": int,
    "gpu_type": str, "gpu_count": int, "disk_size": int, "ephemeral": int, "public_ipv4": str,
    "price_per_hour": NUMBER, "os": str, "status": str,
}
INSTANCE_DETAIL: Spec = {
    "id": (str, int), "region": str, "host_name": str, "cpu_cores": re.compile(r"^\d+$"), "ram": re.compile(r"^\d+$"),
    "gpu_type": str, "gpu_count": int, "disk_size": int, "public_ipv4": str, "login_method": str, "os": str,
    "exposed_ports": str, "status": str,
    "start_time": re.compile(r"^[A-Z]{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"),
    "running_time": re.compile(r"^\d+\.\d{4} hours$"),
    "total_cost": re.compile(r"^\$\d+\.\d{4}$"),
}
SSH_KEY: Spec = {"id": int, "key_name": str, "key_data": str, "create_time": str}

# Documented examples, verbatim from reference/vendor-apis.md section 3 and the Nebula docs.
DOC_PRODUCTS = {"data": {"CANADA": {"H100": [
    {"id": "fcp66d566c43a9501001256", "dc_id": 1, "product_type": "Container", "region": "CANADA", "price_per_hour": 1.0, "cpu": 24, "ram": 200, "gpu": "H100-80G-SXM", "gpu_type": "H100", "gpu_count": 1, "disk_size": 200, "ephemeral": 1500, "stock": 99, "cycle": "hourly", "is_available": True},
    {"id": "expde8da3529-f08d-4f86-8456-04094d19fbc4", "dc_id": 2, "product_type": "Virtual Machine", "region": "CANADA", "price_per_hour": 2.627, "cpu": 28, "ram": 180, "gpu": "H100-80G-PCIe", "gpu_type": "H100", "gpu_count": 1, "disk_size": 100, "ephemeral": 750, "stock": 99, "cycle": "hourly", "is_available": True}],
    "RTX": [{"id": "expd0ce88325-aeb0-48d0-8216-09506b58f1dd", "dc_id": 2, "product_type": "Virtual Machine", "region": "CANADA", "price_per_hour": 0.697, "cpu": 28, "ram": 58, "gpu": "RTX-A6000", "gpu_type": "RTX", "gpu_count": 1, "disk_size": 100, "ephemeral": 0, "stock": 99, "cycle": "hourly", "is_available": True}]}},
    "message": "All products retrieved successfully", "status": "success"}
DOC_IMAGES = {"data": {"CANADA": [
    {"id": "fcp66d566c93a95010012", "dc_id": 1, "os_name": "Ubuntu Server 22.04 LTS", "os_type": "Ubuntu", "region": "CANADA"},
    {"id": "exoscee6e762-1d11-4f65-a7d6-8c0670b603b2", "dc_id": 2, "os_name": "Ubuntu Server 22.04 LTS R535 CUDA 12.2", "os_type": "Ubuntu", "region": "CANADA"}]},
    "message": "All OS retrieved successfully", "status": "success"}
DOC_INSTANCES = {"data": [{"id": "102cade84ea-e703-4400-b77d-8ed545d198ee", "region": "CANADA", "product_type": "GPU", "host_name": "demo", "cpu_cores": 28, "ram": 58, "gpu_type": "RTX-A6000", "gpu_count": 1, "disk_size": 100, "ephemeral": 1500, "public_ipv4": "38.80.81.128", "price_per_hour": 0.679, "os": "Ubuntu Server 20.04 LTS (Focal Fossa)", "status": "Running"}],
                 "total_instance": 1, "message": "All instances retrieved successfully", "status": "success"}
DOC_DELETED_INSTANCES = {**DOC_INSTANCES, "data": [{**DOC_INSTANCES["data"][0], "status": "Deleted"}], "message": "All deleted instances retrieved successfully"}
DOC_DETAIL = {"data": [{"id": 41, "region": "CANADA", "instance_type": "GPU", "host_name": "mike-1001", "cpu_cores": "28", "ram": "58", "gpu_type": "RTX-A6000", "gpu_count": 1, "disk_size": 100, "public_ipv4": "62.169.158.214", "login_method": "", "os": "Ubuntu Server 20.04 LTS (Focal Fossa)", "exposed_ports": "", "vm_name": "mike-1001", "vm_password": "x", "status": "Running", "start_time": "EST 2024-11-04 10:11:50", "running_time": "0.0000 hours", "total_cost": "$0.0000"}],
              "message": "Get instance detail successfully", "status": "success"}
DOC_SSH_KEYS = {"data": {"total_ssh_keys": 1, "ssh_keys": [{"id": 75, "key_name": "k", "key_data": "ssh-rsa AAAA", "create_time": "EST 2024-10-23 10:24:21"}]}, "message": "SSH keys retrieved successfully", "status": "success"}
DOC_SSH_KEY_CREATED = {"data": {"id": 73, "key_name": "k", "key_data": "ssh-rsa AAAA", "create_time": "1730847667"}, "message": "SSH key created successfully", "status": "success"}
DOC_DELETE = {"message": "Instances deleted successfully", "status": "success"}  # seed 003

SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqyW18ZGi2DJz/l+lLuY53kFjwSih6p43MKiuWl49io test@gpusupply"
OTHER_SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzJ28u6bseeps2CyOLqKZ/tlghzlrmY7oCigoJ07/og other@gpusupply"


def shape_problems(obj: Any, spec: Spec, where: str = "") -> list[str]:
    """Every way `obj` differs from `spec` (missing field, wrong type, value not matching)."""
    if not isinstance(obj, dict):
        return [f"{where or 'value'} is {type(obj).__name__}, not an object"]
    problems = []
    for name, expected in spec.items():
        label = f"{where}.{name}" if where else name
        if name not in obj:
            problems.append(f"{label} missing")
            continue
        value = obj[name]
        if isinstance(expected, re.Pattern):
            if not isinstance(value, str) or not expected.match(value):
                problems.append(f"{label}={value!r} does not match {expected.pattern}")
        elif isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
            problems.append(f"{label} is a bool")
        elif not isinstance(value, expected):
            problems.append(f"{label}={value!r} is not {expected}")
    return problems


def envelope_problems(body: Any, *, status: str = "success") -> list[str]:
    problems = shape_problems(body, ENVELOPE)
    if not problems and body["status"] != status:
        problems.append(f"status is {body['status']!r}, expected {status!r}")
    return problems


def failed_body_problems(body: Any, message: str | None = None) -> list[str]:
    """A failed answer: the envelope with status failed, data null, and (if given) this message."""
    problems = envelope_problems(body, status="failed")
    if not problems and body.get("data", "absent") is not None:
        problems.append("failed envelope has non-null data")
    if not problems and message is not None and body["message"] != message:
        problems.append(f"message {body['message']!r} != {message!r}")
    return problems


@contextmanager
def serve(**config: Any) -> Iterator[tuple[NebulaSandbox, httpx.Client]]:
    """A Nebula sandbox on loopback and a client for it (no auth header set)."""
    settings = {"ready_after": 30.0, "rate_limits": False, "hang_seconds": 0.5, **config}
    sandbox = NebulaSandbox(SandboxConfig(**settings))
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield sandbox, client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def register_ssh_key(client: httpx.Client, key: str, key_data: str = SSH_PUBLIC_KEY, name: str = "laptop") -> int:
    response = client.post(f"{API}/ssh-keys", headers=bearer(key), json={"key_name": name, "key_data": key_data})
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["id"])


def products(client: httpx.Client, key: str) -> list[dict[str, Any]]:
    body = client.get(f"{API}/computing/products", headers=bearer(key)).json()
    return [p for families in body["data"].values() for items in families.values() for p in items]


def image_for(client: httpx.Client, key: str, product: dict[str, Any]) -> str:
    body = client.get(f"{API}/computing/images", headers=bearer(key)).json()
    return next(i["id"] for i in body["data"][product["region"]] if i["dc_id"] == product["dc_id"])


def create_body(client: httpx.Client, key: str, name: str, *, product: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid create body for `key` (registering an SSH key for it)."""
    product = product or next(p for p in products(client, key) if p["stock"] > 0)
    return {
        "instance_name": name,
        "product_id": product["id"],
        "image_id": image_for(client, key, product),
        "ssh_key_id": register_ssh_key(client, key),
    }


def create_instance(client: httpx.Client, key: str, name: str, **kw: Any) -> dict[str, Any]:
    """Create, then return the new instance's list row (the create answers no id)."""
    response = client.post(f"{API}/computing/instance", headers=bearer(key), json=create_body(client, key, name, **kw))
    assert response.status_code == 200, response.text
    rows = client.get(f"{API}/computing/instances", headers=bearer(key)).json()["data"]
    return next(r for r in rows if r["host_name"] == name)


def state(client: httpx.Client) -> dict[str, Any]:
    return client.get("/_sandbox/state").json()


def advance(client: httpx.Client, seconds: float) -> None:
    assert client.post("/_sandbox/clock/advance", json={"seconds": seconds}).status_code == 200


def set_faults(client: httpx.Client, faults: dict[str, float]) -> None:
    assert client.put("/_sandbox/faults", json=faults).status_code == 200
