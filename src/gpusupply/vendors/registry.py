"""The vendor registry: the one list of vendors, found from their adapter modules.

A vendor is one adapter module under `gpusupply/vendors/` that ends with a `VENDOR_SPEC`
(`vendors.base.VendorSpec`): its id, name, adapter class, default URL, rate limits, the
cloud-init forms it runs and its settings options; its `Capabilities` (stop/start, reboot, spot,
idempotency key, marker) are declared on the adapter class. This module finds every such module
in the package, so adding a vendor adds no line here. Settings (`GPUSUPPLY_<VENDOR>_API_KEY`,
`_URL` and the options), the API's vendor checks, the services' rules (cloud-init, allowed
actions), the console and the test fixtures all derive from `VENDOR_SPECS`.

Rules of direction:
- Nothing under `gpusupply.vendors` imports `gpusupply.sandbox` (tests/vendors/test_registry.py
  checks it). The sandbox simulates vendors and may import their adapter modules.
- A fact both an adapter and its sandbox need (the vendor's rate limits, `VendorSpec.limits`;
  RunPod's operation groups) is a constant of the adapter module, the one place both read.
- Sandbox mode (serving an in-process sandbox for a vendor without a key) is wired by the code
  that starts the server, through `gpusupply.sandbox.mode.build_vendors`; here are only the
  adapters and the `VendorSet` they form.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import gpusupply.vendors
from gpusupply.vendors.base import Capabilities, VendorAdapter, VendorSpec
from gpusupply.vendors.http import SharedBuckets, VendorHttp


class AdapterSettings(Protocol):
    """What building an adapter reads from the process's settings (gpusupply.settings.Settings,
    which sits above this layer: its vendor fields are derived from this registry)."""

    vendor_timeout: float
    vendor_rate_scale: float

    def vendor_option(self, vendor: str, name: str) -> str: ...

log = logging.getLogger(__name__)

SANDBOX_KEY = "sandbox-key"  # the key our adapters use against in-process sandboxes


def _adapter_modules() -> list[ModuleType]:
    """Every module of the vendors package that declares a vendor."""
    modules = []
    for info in pkgutil.iter_modules(gpusupply.vendors.__path__):
        module = importlib.import_module(f"{gpusupply.vendors.__name__}.{info.name}")
        if isinstance(getattr(module, "VENDOR_SPEC", None), VendorSpec):
            modules.append(module)
    return modules


def _collect() -> dict[str, VendorSpec]:
    specs = sorted((module.VENDOR_SPEC for module in _adapter_modules()), key=lambda spec: spec.position)
    found: dict[str, VendorSpec] = {}
    for spec in specs:
        if spec.id in found:
            raise RuntimeError(f"two adapter modules declare the vendor {spec.id!r}")
        found[spec.id] = spec
    return found


VENDOR_SPECS: dict[str, VendorSpec] = _collect()  # vendor id -> spec, in listing order
VENDORS: tuple[str, ...] = tuple(VENDOR_SPECS)  # every vendor id, in listing order


def adapter_module_name(vendor: str) -> str:
    """The module's short name ("lambdalabs" for "lambda"); a vendor's sandbox module has the same."""
    return VENDOR_SPECS[vendor].adapter.__module__.rpartition(".")[2]


def capabilities(vendor: str) -> Capabilities | None:
    """A vendor's declared capabilities (None for an id no adapter declares)."""
    spec = VENDOR_SPECS.get(vendor)
    return spec.capabilities if spec is not None else None


def cloud_init_forms(vendor: str) -> tuple[str, ...] | None:
    """The user-data forms a vendor runs at first boot (None for an id no adapter declares)."""
    spec = VENDOR_SPECS.get(vendor)
    return spec.cloud_init if spec is not None else None


def adapter_options(vendor: str, settings: AdapterSettings) -> dict[str, Any]:
    """The adapter keyword options a vendor's settings options give (so adapters stay settings-free)."""
    options: dict[str, Any] = {}
    for option in VENDOR_SPECS[vendor].options:
        options.update(option.to_options(settings.vendor_option(vendor, option.name)))
    return options


def build_adapter(vendor: str, url: str, api_key: str, settings: AdapterSettings, **extra: Any) -> VendorAdapter:
    """A vendor's adapter at `url`, configured from the settings (timeout, rate scale, options)."""
    options = {**adapter_options(vendor, settings), **extra}
    adapter: VendorAdapter = VENDOR_SPECS[vendor].adapter(
        url, api_key, timeout=settings.vendor_timeout, rate_scale=settings.vendor_rate_scale, **options
    )
    return adapter


@dataclass
class VendorSet:
    """The adapters a process uses, with each vendor's mode and URL."""

    adapters: dict[str, VendorAdapter]
    modes: dict[str, str]  # vendor -> "live" | "sandbox"
    urls: dict[str, str]
    sandboxes: dict[str, Any] = field(default_factory=dict)  # vendor -> its in-process VendorSandbox (sandbox mode)
    # Run after the adapters close, in order: what the composition started along with them
    # (sandbox servers, the sandboxes' state saver).
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def share_buckets(self, shared: SharedBuckets | None) -> None:
        """Pace every adapter through rate-limit buckets shared with the other processes (None:
        back to in-process buckets, for adapters used without a database)."""
        for adapter in self.adapters.values():
            http = getattr(adapter, "_http", None)  # every adapter keeps its VendorHttp there
            if isinstance(http, VendorHttp):
                http.share_buckets(shared)

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()
        for close in self.on_close:
            await close()

