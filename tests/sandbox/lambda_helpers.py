"""Lambda's OpenAPI document (1.8.3, as Lambda publishes it at /api/v1/openapi.json; a copy is kept
in tests/sandbox/openapi/) as a validator of the sandbox's answers, and small client helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import schemathesis

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.lambdalabs import LambdaSandbox
from gpusupply.sandbox.runner import ServerThread

API = "/api/v1"
# Lambda's published document, in ../shared beside the repository (as on CI's clean clone).
DOCUMENT = Path(__file__).resolve().parents[3] / "shared" / "reference" / "openapi" / "lambda-cloud-1.8.3.json"
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqyW18ZGi2DJz/l+lLuY53kFjwSih6p43MKiuWl49io test@gpusupply"

# The error envelope as the document's info.description states it, for the statuses whose answers
# the document does not describe (429 and 5xx): {"error": {code, message, suggestion?}}.
ERROR_ENVELOPE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "suggestion": {"type": "string"}},
        }
    },
}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text())


@lru_cache(maxsize=1)
def schema() -> Any:
    return schemathesis.openapi.from_dict(document())


def documented_statuses(path: str, method: str) -> set[int]:
    return {int(code) for code in document()["paths"][path][method.lower()]["responses"]}


def conformance_problems(path: str, method: str, response: httpx.Response) -> list[str]:
    """Every way `response` breaks the document: the operation's described answer for a documented
    status (schemathesis), else the error envelope of info.description (and ApiErrorInternal for
    a 500)."""
    if response.status_code in documented_statuses(path, method):
        try:
            schema()[path][method.upper()].validate_response(response)
        except Exception as exc:  # noqa: BLE001 - schemathesis raises a family of check failures
            return [f"{method} {path} {response.status_code}: {exc}"]
        return []
    try:
        body = response.json()
    except json.JSONDecodeError:
        return [f"{method} {path} {response.status_code}: not JSON"]
    problems = [f"{method} {path} {response.status_code}: {e.message}" for e in jsonschema_rs.validator_for(ERROR_ENVELOPE).iter_errors(body)]
    if response.status_code == 500:
        internal = document()["components"]["schemas"]["ApiErrorInternal"]
        problems += [f"500 error: {e.message}" for e in jsonschema_rs.validator_for(internal).iter_errors(body.get("error"))]
    return problems


@contextmanager
def serve(**config: Any) -> Iterator[tuple[LambdaSandbox, httpx.Client]]:
    """A Lambda sandbox on loopback and a client for it (no auth header set)."""
    settings = {"ready_after": 30.0, "rate_limits": False, "hang_seconds": 0.3, **config}
    sandbox = LambdaSandbox(SandboxConfig(**settings))
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield sandbox, client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def add_key(client: httpx.Client, key: str, name: str = "laptop", public_key: str = SSH_PUBLIC_KEY) -> httpx.Response:
    return client.post(f"{API}/ssh-keys", headers=bearer(key), json={"name": name, "public_key": public_key})


def offered(client: httpx.Client, key: str) -> list[tuple[str, str]]:
    """(instance type, region) pairs with capacity now."""
    data = client.get(f"{API}/instance-types", headers=bearer(key)).json()["data"]
    return [(name, r["name"]) for name, item in data.items() for r in item["regions_with_capacity_available"]]


def launch_body(instance_type: str, region: str, name: str = "gpusupply-test", key_name: str = "laptop", **extra: Any) -> dict[str, Any]:
    return {"region_name": region, "instance_type_name": instance_type, "ssh_key_names": [key_name], "name": name, **extra}
