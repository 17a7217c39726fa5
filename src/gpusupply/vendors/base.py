"""The vendor protocol: what the engine and services may ask of any vendor, and how a vendor declares itself.

One module per vendor implements `VendorAdapter` (vendors/vast.py, fal.py, nebula.py, lambdalabs.py,
runpod.py) and ends with its `VENDOR_SPEC`: the vendor's id, settings, rate limits and rules, which
vendors/registry.py collects. Optional operations are declared in `Capabilities`; calling one a
vendor lacks raises `Unsupported`.

Contract, for every adapter:
- Every call raises only `gpusupply.core.errors` types (never httpx or KeyError), except a
  database error when the shared rate-limit buckets cannot be reached: then nothing was sent.
- `list_instances` returns every instance of the account (all pages) or raises; a malformed,
  truncated or errored list is `VendorUnavailable`, never an empty list.
- `create` is never retried blindly. Its outcome, when a `VendorUnavailable` is raised, is unknown:
  the engine then calls `recover`, which finds the instance through the vendor's idempotency key
  or through our marker on the instance.
- `delete` of an instance that is already gone returns normally (404 means gone).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from gpusupply.core.errors import InvalidRequest
from gpusupply.core.markers import (
    INSTALLATION_ID_LEN,
    MARKER_PREFIX,
    Marker,
    marker_for,
    parse_marker,
    resource_id_from_marker,
)
from gpusupply.core.offers import Offer
from gpusupply.core.states import InstanceState

if TYPE_CHECKING:
    from gpusupply.vendors.http import RateLimits

__all__ = ["INSTALLATION_ID_LEN", "MARKER_PREFIX", "Marker", "marker_for", "parse_marker", "resource_id_from_marker"]

@dataclass(frozen=True, slots=True)
class Capabilities:
    stop_start: bool
    reboot: bool
    idempotency_key: bool  # create takes a key that makes a repeat return the first instance
    marker: bool  # instances carry our marker (label/name) and can be found by it in a listing
    spot: bool  # offers include interruptible (spot/bid) contracts
    # Whether a stopped instance still bills its GPUs (documented per vendor, used for cost).
    stopped_bills_gpu: bool = False

    def supports(self, action: str) -> bool:
        """Whether the vendor can do a resource action ("stop", "start", "reboot"); "delete" always."""
        if action in ("stop", "start"):
            return self.stop_start
        if action == "reboot":
            return self.reboot
        return action == "delete"


# The user-data forms a vendor can run at first boot (`VendorSpec.cloud_init`).
CLOUD_CONFIG = "#cloud-config"
SCRIPT = "#!/"


@dataclass(frozen=True, slots=True)
class VendorOption:
    """A vendor setting beyond its key and URL: `GPUSUPPLY_<VENDOR>_<NAME>`, read as text and turned
    into adapter keyword options by `to_options` (empty text: the adapter's default)."""

    name: str  # "price_table" -> GPUSUPPLY_FAL_PRICE_TABLE, Settings.fal_price_table
    description: str
    to_options: Callable[[str], dict[str, Any]]
    default: str = ""


@dataclass(frozen=True, slots=True)
class VendorSpec:
    """Everything the rest of gpusupply knows about a vendor, declared once in its adapter module.

    Settings, the API's vendor checks, the services' rules, the console and the test fixtures read
    it through vendors/registry.py; nothing else lists vendors.
    """

    id: str  # "vast": the vendor field, `GPUSUPPLY_<ID>_...` settings, `/available_vendors`
    name: str  # how people call it: "Vast.ai"
    adapter: type[Any]  # the `VendorAdapter` class, built as adapter(url, api_key, timeout=, rate_scale=, **options)
    default_url: str  # GPUSUPPLY_<ID>_URL when unset
    limits: RateLimits  # documented or assumed; our pacing stays under them and the sandbox enforces them
    cloud_init: tuple[str, ...]  # user-data forms it runs (CLOUD_CONFIG, SCRIPT); () takes none
    position: int  # where it is listed (settings default, `/available_vendors`): the order vendors were added
    options: tuple[VendorOption, ...] = ()

    @property
    def capabilities(self) -> Capabilities:
        capabilities: Capabilities = self.adapter.capabilities  # every adapter class declares them
        return capabilities


@dataclass(slots=True)
class VendorInstance:
    vendor_instance_id: str
    state: InstanceState
    raw_status: str | None  # the vendor's own word, kept for events and debugging
    marker: str | None = None  # our marker when the vendor shows it (label / name)
    external_ip: str | None = None
    ssh_port: int | None = None
    ssh_host: str | None = None  # when the vendor routes SSH through a proxy host
    vendor_region: str | None = None
    gpu_name: str | None = None
    gpu_count: int | None = None
    price_per_hour: float | None = None
    # An ended instance the vendor keeps (RunPod's interrupted pods, EXITED without GPUs): its GPUs
    # no longer bill, but it still exists until a delete removes it, so it does not confirm a delete.
    lingers: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resource_id(self) -> UUID | None:
        return resource_id_from_marker(self.marker)

    @property
    def installation_id(self) -> str | None:
        parsed = parse_marker(self.marker)
        return parsed.installation_id if parsed is not None else None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    resource_id: UUID
    offer: Offer
    ssh_public_key: str
    cloud_init: str | None = None
    name: str | None = None  # the user's resource name; the vendor-side name is always our marker
    # When a create of this request was first sent, if ever: recovery through an idempotency key
    # only works inside the vendor's replay window (fal: 10 minutes).
    first_attempt_at: datetime | None = None
    installation_id: str | None = None  # this installation's id, carried by the marker

    @property
    def marker(self) -> str:
        return marker_for(self.resource_id, self.installation_id)

    def is_ours(self, marker: str | None) -> bool:
        """Whether a vendor name/label is this request's marker, in its current form or the form used
        before installations were named (a create sent before an upgrade is still recovered)."""
        parsed = parse_marker(marker)
        return parsed is not None and parsed.resource_id == self.resource_id and parsed.installation_id in (None, self.installation_id)

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker `is_ours` accepts, for vendors that filter by exact name on the server."""
        legacy = marker_for(self.resource_id)
        return (self.marker,) if self.marker == legacy else (self.marker, legacy)

    @property
    def idempotency_key(self) -> str:
        # Stable for one resource: a repeated create (any process, any retry) carries the same key.
        return str(self.resource_id)


@runtime_checkable
class VendorAdapter(Protocol):
    vendor: str  # "vast" | "fal" | "nebula" | "lambda"
    capabilities: Capabilities

    async def list_offers(self) -> list[Offer]: ...

    async def create(self, request: CreateRequest) -> VendorInstance | None:
        """Create the instance. Returns it, or None when the vendor accepted the create but
        answers no id (Nebula): the engine then finds it with `recover`."""
        ...

    async def recover(self, request: CreateRequest) -> VendorInstance | None:
        """Find the instance an earlier create of this request made, if any. Safe to call any
        number of times; never creates a second instance."""
        ...

    async def get(self, vendor_instance_id: str) -> VendorInstance:
        """One instance; raises NotFoundOnVendor when it is gone."""
        ...

    async def list_instances(self) -> list[VendorInstance]: ...

    async def delete(self, vendor_instance_id: str) -> None: ...

    async def start(self, vendor_instance_id: str) -> None: ...

    async def stop(self, vendor_instance_id: str) -> None: ...

    async def reboot(self, vendor_instance_id: str) -> None: ...

    async def aclose(self) -> None: ...


def ssh_key_identity(vendor: str, public_key: str) -> tuple[str, str]:
    """(comparable form "type base64", key name derived from the fingerprint) of an OpenSSH public
    key, for vendors that keep keys registered by name (Nebula, Lambda): the same key always gets
    the same name, so it is registered once and reused. Raises InvalidRequest when it is not one."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise InvalidRequest(vendor, "ssh public key is not in OpenSSH format ('type base64 [comment]')")
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(vendor, "ssh public key: the key body is not base64") from None
    return f"{key_type} {blob}", f"gpusupply-{hashlib.sha256(raw).hexdigest()[:16]}"
