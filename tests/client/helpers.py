"""A whole gpusupply service on a loopback port for SDK and CLI tests.

`live_service(path)` runs `create_app` (engine on, in-process sandbox vendors, SQLite) under
uvicorn in a background thread, with fast engine intervals and short sandbox ready times, and
creates API keys for two tenants first. A `FlakyFront` before the app can answer chosen requests
with errors (429, 503) to exercise client retries against the real service. Blocking clients (the sync SDK, the CLI through Typer's
CliRunner) talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from gpusupply.app import create_app
from gpusupply.client import GpuSupply
from gpusupply.db.session import Database
from gpusupply.sandbox.runner import ServerThread
from gpusupply.services.keys import create_key
from gpusupply.settings import Settings
from tests.conftest import make_test_settings

FAST_ENGINE: dict[str, Any] = {
    "engine_poll_seconds": 0.1,
    "provisioning_poll_seconds": 0.2,
    "refresh_interval_seconds": 1.0,
    "sandbox_offers": 100,
}
TENANTS = ("alice", "bob")
# Families tried in turn when a test needs any 1-GPU offer of one vendor.
FAMILIES = ("RTX4090", "H100", "A100", "L40S", "RTX3090", "RTX5090", "A6000", "L4", "H200", "B200")


class FlakyFront:
    """An ASGI front for the real app: answers the next requests to a path with the errors asked
    for (`fail_next`), then lets requests through again. Records every request it saw."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failures: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers

    def fail_next(self, path: str, *answers: tuple[int, dict[str, str]]) -> None:
        self.failures.setdefault(path, []).extend(answers)

    def requests_to(self, path: str) -> list[tuple[str, str, dict[str, str]]]:
        return [seen for seen in self.seen if seen[1] == path]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
            self.seen.append((scope["method"], scope["path"], headers))
            queue = self.failures.get(scope["path"])
            if queue:
                status, extra = queue.pop(0)
                await JSONResponse({"detail": f"injected {status}"}, status_code=status, headers=extra)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass
class LiveService:
    url: str
    tokens: dict[str, str]  # tenant -> API key
    settings: Settings
    app: Any
    front: FlakyFront

    def sandbox(self, vendor: str) -> Any:
        return self.app.state.ctx.vendors.sandboxes[vendor]

    def client(self, tenant: str = "alice", **options: Any) -> GpuSupply:
        return GpuSupply(self.url, self.tokens[tenant], **options)


async def _create_keys(settings: Settings) -> dict[str, str]:
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        return {tenant: (await create_key(db, f"{tenant}-key", tenant=tenant))[1] for tenant in TENANTS}
    finally:
        await db.dispose()


@contextlib.contextmanager
def live_service(path: Path, **overrides: Any) -> Iterator[LiveService]:
    settings = make_test_settings(path, **{**FAST_ENGINE, **overrides})
    with ThreadPoolExecutor(1) as pool:  # own event loop: the test may be inside one
        tokens = pool.submit(asyncio.run, _create_keys(settings)).result()
    app = create_app(settings, run_engine=True)
    front = FlakyFront(app)
    with ServerThread(front) as server:
        yield LiveService(server.url, tokens, settings, app, front)


def cheapest_offer_id(gs: GpuSupply, vendor: str, skip: int = 0) -> str:
    """The cheapest 1-GPU offer of `vendor` (after `skip` others), any family."""
    for family in FAMILIES:
        found = gs.get_offers(family, vendor=vendor, limit=skip + 1)  # type: ignore[arg-type]
        if len(found.offers) > skip:
            return str(found.offers[skip].offer_id)
    raise AssertionError(f"no 1-GPU offer from {vendor}")


def live_markers(service: LiveService, vendor: str) -> list[str]:
    """Markers of the vendor sandbox's instances that still exist (may bill)."""
    state = service.sandbox(vendor).state()
    return [i["marker"] or "" for i in state["instances"] if i["phase"] not in ("deleted", "preempted")]
