"""Test data and helpers for the fal sandbox: response schemas from the seed pages, a served sandbox.

The schemas are copied from the OpenAPI in seeds 000 (delete) and 004 (create), without their
descriptions and examples; `test_schemas_match_seed_pages` checks they still equal the seeds.
The list envelope is not in a seed: it is written from the docs' list page (vendor-apis.md 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema_rs

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.fal import FalSandbox
from gpusupply.sandbox.runner import ServerThread

INSTANCES = "/v1/compute/instances"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3x test@host"

INSTANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "instance_type": {"type": "string", "enum": ["gpu_8x_h100_sxm5", "gpu_1x_h100_sxm5"]},
        "region": {"type": "string", "enum": ["us-west", "us-central", "us-east", "eu-north", "eu-west", "other"]},
        "sector": {"type": "string", "enum": ["sector_1", "sector_2", "sector_3"]},
        "ip": {"type": "string"},
        "status": {"type": "string", "enum": ["ready", "init", "pending", "provisioning", "stopped", "unknown"]},
        "creator_user_nickname": {"type": "string"},
    },
    "required": ["id", "instance_type", "region", "status"],
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [
                        "authorization_error",
                        "validation_error",
                        "not_found",
                        "rate_limited",
                        "server_error",
                        "not_implemented",
                    ],
                },
                "message": {"type": "string"},
                "docs_url": {"type": "string", "format": "uri"},
                "request_id": {"type": "string"},
            },
            "required": ["type", "message"],
        }
    },
    "required": ["error"],
}

LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instances": {"type": "array", "items": INSTANCE_SCHEMA},
        "next_cursor": {"type": ["string", "null"]},
        "has_more": {"type": "boolean"},
    },
    "required": ["instances", "next_cursor", "has_more"],
}

_VALIDATORS = {name: jsonschema_rs.validator_for(schema) for name, schema in
               (("instance", INSTANCE_SCHEMA), ("error", ERROR_SCHEMA), ("list", LIST_SCHEMA))}


def assert_valid(kind: str, body: Any) -> None:
    """Raise (with the schema's complaint) unless `body` fits the named response schema."""
    _VALIDATORS[kind].validate(body)


def strip_docs(node: Any) -> Any:
    """A schema without its `description` and `example` keys, for comparing with the seeds."""
    if isinstance(node, dict):
        return {k: strip_docs(v) for k, v in node.items() if k not in ("description", "example")}
    if isinstance(node, list):
        return [strip_docs(v) for v in node]
    return node


def key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Key {key}"}


@contextmanager
def served_fal(config: SandboxConfig | None = None, **sandbox_kw: Any) -> Iterator[tuple[FalSandbox, httpx.Client]]:
    """A fal sandbox on a loopback port and an httpx client for it (no auth header set)."""
    sandbox = FalSandbox(config or SandboxConfig(seed=7, offers=100, ready_after=60.0), **sandbox_kw)
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield sandbox, client


def create(client: httpx.Client, key: str, body: dict[str, Any] | None = None, idem: str | None = None) -> httpx.Response:
    headers = key_headers(key)
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return client.post(INSTANCES, json=body if body is not None else {"instance_type": "gpu_1x_h100_sxm5", "ssh_key": SSH_KEY}, headers=headers)


def advance(client: httpx.Client, seconds: float) -> None:
    client.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()


def set_faults(client: httpx.Client, faults: dict[str, float]) -> None:
    client.put("/_sandbox/faults", json=faults).raise_for_status()


def set_config(client: httpx.Client, **config: Any) -> None:
    client.put("/_sandbox/config", json=config).raise_for_status()


def state(client: httpx.Client) -> dict[str, Any]:
    return client.get("/_sandbox/state").json()
