"""Build the vendor adapters a process uses, live or sandbox.

A vendor with an API key in the settings is live: its adapter talks to the vendor's real host
(or `GPUSUPPLY_<VENDOR>_URL`). A vendor without a key runs as sandbox: its simulated API is
served in-process on a loopback port and the same real adapter is pointed at it, over HTTP.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any

from gpusupply.sandbox.common import SandboxConfig, parse_fault_spec
from gpusupply.sandbox.runner import ServerTask
from gpusupply.settings import Settings
from gpusupply.vendors.base import VendorAdapter
from gpusupply.vendors.http import SharedBuckets, VendorHttp

log = logging.getLogger(__name__)

# vendor id -> (adapter class path, sandbox class path)
VENDOR_MODULES: dict[str, tuple[str, str]] = {
    "vast": ("gpusupply.vendors.vast:VastAdapter", "gpusupply.sandbox.vast:VastSandbox"),
    "fal": ("gpusupply.vendors.fal:FalAdapter", "gpusupply.sandbox.fal:FalSandbox"),
    "nebula": ("gpusupply.vendors.nebula:NebulaAdapter", "gpusupply.sandbox.nebula:NebulaSandbox"),
    "lambda": ("gpusupply.vendors.lambdalabs:LambdaAdapter", "gpusupply.sandbox.lambdalabs:LambdaSandbox"),
    "runpod": ("gpusupply.vendors.runpod:RunPodAdapter", "gpusupply.sandbox.runpod:RunPodSandbox"),
}

SANDBOX_KEY = "sandbox-key"  # the key our adapters use against in-process sandboxes


def load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def adapter_options(vendor: str, settings: Settings) -> dict[str, Any]:
    """Vendor-specific adapter options from settings (kept here so the adapters stay settings-free)."""
    if vendor == "fal" and settings.fal_price_table:
        import json

        return {"price_table": json.loads(settings.fal_price_table)}
    return {}


@dataclass
class VendorSet:
    adapters: dict[str, VendorAdapter]
    modes: dict[str, str]  # vendor -> "live" | "sandbox"
    urls: dict[str, str]
    sandboxes: dict[str, Any] = field(default_factory=dict)  # vendor -> VendorSandbox (sandbox mode)
    _servers: list[ServerTask] = field(default_factory=list)
    store: Any = None  # sandbox.state.SandboxStore when the sandboxes' state is kept on disk
    _saver: asyncio.Task[None] | None = None

    def share_buckets(self, shared: SharedBuckets | None) -> None:
        """Pace every adapter through rate-limit buckets shared with the other processes (None:
        back to in-process buckets, for adapters used without a database)."""
        for adapter in self.adapters.values():
            http = getattr(adapter, "_http", None)  # every adapter keeps its VendorHttp there
            if isinstance(http, VendorHttp):
                http.share_buckets(shared)

    async def aclose(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
        for adapter in self.adapters.values():
            await adapter.aclose()
        for server in self._servers:
            await server.stop()
        if self.store is not None:
            for sandbox in self.sandboxes.values():
                self.store.save(sandbox)

    async def keep_saving(self, every: float = 2.0) -> None:
        """Write the sandboxes' state while they run (a crash loses at most `every` seconds)."""
        while True:
            await asyncio.sleep(every)
            for sandbox in self.sandboxes.values():
                try:
                    self.store.save(sandbox)
                except OSError as exc:
                    log.warning("cannot save the sandbox state", extra={"vendor": sandbox.name, "error": str(exc)})


async def build_vendors(settings: Settings, *, start_sandboxes: bool = True) -> VendorSet:
    """Adapters for every enabled vendor. Sandbox vendors are started inside the running loop."""
    adapters: dict[str, VendorAdapter] = {}
    modes: dict[str, str] = {}
    urls: dict[str, str] = {}
    sandboxes: dict[str, Any] = {}
    servers: list[ServerTask] = []
    store = None
    for vendor in settings.vendors:
        adapter_path, sandbox_path = VENDOR_MODULES[vendor]
        key = settings.vendor_key(vendor)
        if key is not None and key.get_secret_value():
            url, api_key, modes[vendor] = settings.vendor_url(vendor), key.get_secret_value(), "live"
        elif start_sandboxes:
            config = SandboxConfig(
                seed=settings.sandbox_seed,
                offers=settings.sandbox_offers,
                ready_after=settings.sandbox_ready_after,
                faults=parse_fault_spec(settings.sandbox_faults),
                rate_scale=settings.vendor_rate_scale,
            )
            if settings.sandbox_state_dir is not None:
                from gpusupply.sandbox.state import SandboxStore

                store = SandboxStore.open(settings.sandbox_state_dir)  # raises if another process has it
                config.id_base = store.new_id_base(vendor)
            sandbox = load(sandbox_path)(config)
            if store is not None:
                store.restore(sandbox)
            server = await ServerTask(sandbox.create_app()).start()
            servers.append(server)
            sandboxes[vendor] = sandbox
            url, api_key, modes[vendor] = server.url, SANDBOX_KEY, "sandbox"
        else:
            continue
        adapters[vendor] = load(adapter_path)(
            url, api_key, timeout=settings.vendor_timeout, rate_scale=settings.vendor_rate_scale, **adapter_options(vendor, settings)
        )
        urls[vendor] = url
    vendor_set = VendorSet(adapters, modes, urls, sandboxes, servers, store)
    if store is not None and sandboxes:
        vendor_set._saver = asyncio.create_task(vendor_set.keep_saving())
    return vendor_set
