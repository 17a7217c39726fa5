"""The vendor registry: every registered vendor has what docs/vendors.md's "Adding a vendor" asks
(its adapter module, its sandbox, its docs page, its conformance tests), everything that lists
vendors derives from the registry, and the adapters never import the sandbox."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gpusupply.sandbox.common import SandboxConfig, VendorSandbox
from gpusupply.sandbox.mode import sandbox_class
from gpusupply.settings import Settings
from gpusupply.vendors import registry
from gpusupply.vendors.base import VendorAdapter, VendorSpec
from gpusupply.vendors.registry import VENDOR_SPECS, VENDORS, adapter_module_name

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "gpusupply"


def test_the_registry_lists_every_adapter_module_once_in_listing_order() -> None:
    assert VENDORS == ("vast", "fal", "nebula", "lambda", "runpod")
    positions = [spec.position for spec in VENDOR_SPECS.values()]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for vendor, spec in VENDOR_SPECS.items():
        assert isinstance(spec, VendorSpec) and spec.id == vendor
        assert spec.adapter.vendor == vendor  # the adapter class says the same id
        assert spec.capabilities is spec.adapter.capabilities


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_vendor_has_its_sandbox_docs_page_and_conformance_tests(vendor: str) -> None:
    module = adapter_module_name(vendor)
    assert (SRC / "vendors" / f"{module}.py").is_file()
    sandbox = sandbox_class(vendor)
    assert issubclass(sandbox, VendorSandbox) and sandbox.name == vendor
    # The adapter over HTTP against its sandbox, and the sandbox against the vendor's documents.
    assert (ROOT / "tests" / "vendors" / f"test_{module}.py").is_file()
    assert (ROOT / "tests" / "sandbox" / f"test_{module}.py").is_file()
    page = ROOT / "docs" / "vendors" / f"{vendor}.md"
    assert page.is_file(), f"docs/vendors/{vendor}.md is missing"
    text = page.read_text()
    spec = VENDOR_SPECS[vendor]
    settings = [f"GPUSUPPLY_{vendor.upper()}_API_KEY", f"GPUSUPPLY_{vendor.upper()}_URL"]
    settings += [f"GPUSUPPLY_{vendor.upper()}_{option.name.upper()}" for option in spec.options]
    missing = [name for name in settings if name not in text]
    assert not missing, f"docs/vendors/{vendor}.md does not name {missing}"
    assert spec.default_url in text


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_adapter_satisfies_the_protocol_and_its_sandbox_enforces_its_limits(vendor: str) -> None:
    spec = VENDOR_SPECS[vendor]
    adapter = spec.adapter("http://127.0.0.1:9", "key")
    assert isinstance(adapter, VendorAdapter)
    sandbox = sandbox_class(vendor)()
    enforced = dict(sandbox.rate_limits)
    for route, limit in spec.limits.routes.items():
        assert enforced[route] == limit  # one figure, read by both
    if spec.limits.key is not None:
        assert sandbox.key_bucket is not None and enforced[sandbox.key_bucket] == spec.limits.key


def paced_burst_refusals(vendor: str, route: str, calls: int, rate_scale: float) -> int:
    """How many of `calls` made at one instant, sent when the adapter's pacer books them, its
    sandbox (rate limits on, the same scale) would refuse. Pure: both sides read the times given,
    so a loaded machine cannot change the answer."""
    spec = VENDOR_SPECS[vendor]
    http = spec.adapter("http://127.0.0.1:9", "key", rate_scale=rate_scale)._http  # type: ignore[attr-defined]
    sandbox = sandbox_class(vendor)(SandboxConfig(offers=1, rate_limits=True, rate_scale=rate_scale))
    start = 1000.0
    send_times = [start + http.reserve(route, start) for _ in range(calls)]
    return sum(sandbox.check_rate("account", route, now=at) is not None for at in send_times)


@pytest.mark.parametrize("rate_scale", [1.0, 4.0, 10.0])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_burst_paced_by_the_adapter_is_never_refused_by_its_sandbox(vendor: str, rate_scale: float) -> None:
    """What the HTTP pacing tests show on a quiet machine, on every route of every vendor, as
    arithmetic: the adapter's pacing (a share of the limit, one request less of burst) keeps a
    burst of three times the route's burst inside the limits its sandbox enforces."""
    limits = VENDOR_SPECS[vendor].limits
    routes = dict(limits.routes) or {"any route": limits.key}
    for route, limit in routes.items():
        assert limit is not None
        calls = 3 * int(max(limit[1], 1)) + 3
        assert paced_burst_refusals(vendor, route, calls, rate_scale) == 0, (vendor, route)


def test_the_arithmetic_sees_a_burst_the_pacer_did_not_space() -> None:
    """The check above can fail: unpaced (all at once), a burst past the limit is refused."""
    vendor = VENDORS[0]
    route, (_, burst) = next(iter(VENDOR_SPECS[vendor].limits.routes.items()))
    sandbox = sandbox_class(vendor)(SandboxConfig(offers=1, rate_limits=True))
    refused = sum(sandbox.check_rate("account", route, now=1000.0) is not None for _ in range(int(burst) + 2))
    assert refused == 2


def test_settings_derive_every_vendors_fields_from_the_registry() -> None:
    fields = Settings.model_fields
    for vendor, spec in VENDOR_SPECS.items():
        assert fields[f"{vendor}_api_key"].default is None
        assert fields[f"{vendor}_url"].default == spec.default_url
        for option in spec.options:
            assert fields[f"{vendor}_{option.name}"].default == option.default
    assert fields["enabled_vendors"].default == ",".join(VENDORS)
    settings = Settings(_env_file=None, fal_price_table='{"gpu_1x_h100_sxm5": 2.5}')  # type: ignore[call-arg]
    assert registry.adapter_options("fal", settings) == {"price_table": {"gpu_1x_h100_sxm5": 2.5}}
    with pytest.raises(ValueError, match="unknown vendor"):
        _ = Settings(_env_file=None, enabled_vendors="vast,acme").vendors  # type: ignore[call-arg]


def test_rules_come_from_the_registry() -> None:
    from gpusupply.services.procurement import CLOUD_INIT_PREFIXES, accepted_cloud_init
    from gpusupply.web.views import available_actions

    for vendor, spec in VENDOR_SPECS.items():
        assert accepted_cloud_init(vendor) == spec.cloud_init
        running = available_actions("running", spec.capabilities)
        assert ("stop" in running) == spec.capabilities.stop_start and ("reboot" in running) == spec.capabilities.reboot
        assert ("start" in available_actions("stopped", spec.capabilities)) == spec.capabilities.stop_start
    assert accepted_cloud_init("acme") == CLOUD_INIT_PREFIXES
    assert available_actions("running", None) == ["delete"]


def test_no_vendors_module_imports_the_sandbox() -> None:
    """The sandbox simulates vendors and may read their adapter modules; never the other way."""
    offenders = []
    for path in sorted((SRC / "vendors").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(SRC)}: {name}" for name in names if name.startswith("gpusupply.sandbox")]
    assert offenders == []
