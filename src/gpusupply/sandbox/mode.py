"""Sandbox mode: the vendor set a server or worker runs with, each vendor live or simulated.

A vendor with an API key in the settings is live: its adapter talks to the vendor's real host
(or `GPUSUPPLY_<VENDOR>_URL`). A vendor without a key runs as sandbox: its simulated API is
served in-process on a loopback port and the same real adapter is pointed at it, over HTTP.
The code that starts a process (app.py, cli/server.py) calls `build_vendors`; the adapter
registry (vendors/registry.py) knows nothing of sandboxes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING

from gpusupply.sandbox.common import SandboxConfig, VendorSandbox, parse_fault_spec
from gpusupply.sandbox.runner import ServerTask
from gpusupply.vendors.base import VendorAdapter
from gpusupply.vendors.registry import SANDBOX_KEY, VendorSet, adapter_module_name, build_adapter

if TYPE_CHECKING:
    from gpusupply.sandbox.state import SandboxStore
    from gpusupply.settings import Settings

log = logging.getLogger(__name__)

SAVE_EVERY_SECONDS = 2.0  # a crash loses at most this much of the sandboxes' state


def sandbox_class(vendor: str) -> type[VendorSandbox]:
    """A vendor's simulator: the `VendorSandbox` named `vendor` in the sandbox module that has the
    adapter module's name (sandbox/vast for vendors/vast.py, sandbox/lambdalabs for lambdalabs.py)."""
    module = importlib.import_module(f"gpusupply.sandbox.{adapter_module_name(vendor)}")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, VendorSandbox) and value.name == vendor:
            return value
    raise LookupError(f"gpusupply.sandbox.{adapter_module_name(vendor)} has no VendorSandbox named {vendor!r}")


def sandbox_config(settings: Settings) -> SandboxConfig:
    """The sandboxes' configuration from GPUSUPPLY_SANDBOX_* and the vendor rate scale."""
    return SandboxConfig(
        seed=settings.sandbox_seed,
        offers=settings.sandbox_offers,
        ready_after=settings.sandbox_ready_after,
        faults=parse_fault_spec(settings.sandbox_faults),
        rate_scale=settings.vendor_rate_scale,
        prices_move=settings.sandbox_prices_move,
    )


async def keep_saving(store: SandboxStore, sandboxes: list[VendorSandbox], every: float = SAVE_EVERY_SECONDS) -> None:
    """Write the sandboxes' state while they run."""
    while True:
        await asyncio.sleep(every)
        for sandbox in sandboxes:
            try:
                store.save(sandbox)
            except OSError as exc:
                log.warning("cannot save the sandbox state", extra={"vendor": sandbox.name, "error": str(exc)})


async def build_vendors(settings: Settings) -> VendorSet:
    """Adapters for every enabled vendor. Sandbox vendors are started inside the running loop and
    stopped (their state saved, when kept on disk) by the set's `aclose`."""
    adapters: dict[str, VendorAdapter] = {}
    modes: dict[str, str] = {}
    urls: dict[str, str] = {}
    sandboxes: dict[str, VendorSandbox] = {}
    servers: list[ServerTask] = []
    store: SandboxStore | None = None
    for vendor in settings.vendors:
        key = settings.vendor_key(vendor)
        if key is not None and key.get_secret_value():
            url, api_key, modes[vendor] = settings.vendor_url(vendor), key.get_secret_value(), "live"
        else:
            config = sandbox_config(settings)
            if settings.sandbox_state_dir is not None:
                from gpusupply.sandbox.state import SandboxStore

                store = SandboxStore.open(settings.sandbox_state_dir)  # raises if another process has it
                config.id_base = store.new_id_base(vendor)
            sandbox = sandbox_class(vendor)(config)
            if store is not None:
                store.restore(sandbox)
            server = await ServerTask(sandbox.create_app()).start()
            servers.append(server)
            sandboxes[vendor] = sandbox
            url, api_key, modes[vendor] = server.url, SANDBOX_KEY, "sandbox"
        adapters[vendor] = build_adapter(vendor, url, api_key, settings)
        urls[vendor] = url
    vendor_set = VendorSet(adapters, modes, urls, dict(sandboxes))
    if store is not None and sandboxes:
        saver = asyncio.create_task(keep_saving(store, list(sandboxes.values())))

        async def stop_saving() -> None:
            saver.cancel()

        vendor_set.on_close.append(stop_saving)
    for server in servers:
        vendor_set.on_close.append(server.stop)
    if store is not None:
        kept = store

        async def save_state() -> None:
            for sandbox in sandboxes.values():
                kept.save(sandbox)

        vendor_set.on_close.append(save_state)
    return vendor_set
