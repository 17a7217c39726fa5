"""Helpers for the Vast sandbox tests: a served sandbox, auth headers, and the `vastai` CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.runner import ServerThread
from gpusupply.sandbox.vast import VastSandbox

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3xVastSandboxTestKey test@host"
OTHER_SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC4yAnotherTestKey other@host"
CREATE_BODY: dict[str, Any] = {"client_id": "me", "image": "pytorch/pytorch", "disk": 20.0, "runtype": "ssh", "label": None}
VASTAI = Path(sys.executable).with_name("vastai")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def quick_config(**overrides: Any) -> SandboxConfig:
    """Small inventory, slow-ish readiness driven by the clock, no rate limits unless asked."""
    values: dict[str, Any] = {"seed": 7, "offers": 300, "ready_after": 60.0, "rate_limits": False, "hang_seconds": 0.5}
    values.update(overrides)
    return SandboxConfig(**values)


@contextmanager
def served_vast(config: SandboxConfig | None = None, **sandbox_kw: Any) -> Iterator[tuple[VastSandbox, httpx.Client]]:
    """A Vast sandbox on a loopback port and an httpx client for it (no auth header set)."""
    sandbox = VastSandbox(config or quick_config(), **sandbox_kw)
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield sandbox, client


def search(client: httpx.Client, key: str | None = "k1", **query: Any) -> list[dict[str, Any]]:
    body = {"rentable": {"eq": True}, "rented": {"eq": False}, "verified": {"eq": True}, "order": [["dph_total", "asc"]], **query}
    response = client.post("/api/v0/bundles/", json=body, headers=bearer(key) if key else {})
    response.raise_for_status()
    return response.json()["offers"]


def create(client: httpx.Client, key: str, ask_id: int, **body: Any) -> httpx.Response:
    return client.put(f"/api/v0/asks/{ask_id}/", json={**CREATE_BODY, **body}, headers=bearer(key))


def create_one(client: httpx.Client, key: str = "k1", **body: Any) -> tuple[int, dict[str, Any]]:
    """Accept the cheapest verified offer; returns (instance id, the offer)."""
    offer = search(client, key, limit=1)[0]
    response = create(client, key, offer["id"], **body)
    assert response.status_code == 200, response.text
    return response.json()["new_contract"], offer


def show(client: httpx.Client, key: str, instance_id: int) -> dict[str, Any] | None:
    response = client.get(f"/api/v0/instances/{instance_id}/", params={"owner": "me"}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["instances"]


def list_v1(client: httpx.Client, key: str, **params: Any) -> httpx.Response:
    encoded = {name: value if isinstance(value, str) else json.dumps(value) for name, value in params.items()}
    return client.get("/api/v1/instances/", params=encoded, headers=bearer(key))


def advance(client: httpx.Client, seconds: float) -> None:
    client.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()


def set_faults(client: httpx.Client, faults: dict[str, float]) -> None:
    client.put("/_sandbox/faults", json=faults).raise_for_status()


def set_config(client: httpx.Client, **config: Any) -> None:
    client.put("/_sandbox/config", json=config).raise_for_status()


def state(client: httpx.Client) -> dict[str, Any]:
    return client.get("/_sandbox/state").json()


class VastCli:
    """The official `vastai` CLI run as a subprocess against a sandbox, isolated from the machine:
    its own HOME/XDG dirs, `VAST_URL` (read at import) and `--url`, no update check."""

    def __init__(self, url: str, key: str, home: Path):
        self.url, self.key = url, key
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
            "VAST_URL": url,
            "VASTAI_NO_UPDATE_CHECK": "1",
            "CI": "true",
            "COLUMNS": "200",
            "LINES": "1000",  # never page through `less`
            "NO_COLOR": "1",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(VASTAI), *args, "--url", self.url, "--api-key", self.key]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check:
            assert done.returncode == 0, f"{' '.join(args)} -> {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        return done

    def raw(self, *args: str) -> Any:
        done = self.run(*args, "--raw")
        return json.loads(done.stdout)
