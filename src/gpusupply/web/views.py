"""How the console shows things (pure functions): statuses with a symbol and words (never colour
alone), the actions a resource offers, durations, prices and times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gpusupply.core.states import FINAL_STATUSES, ResourceStatus
from gpusupply.db.models import Resource
from gpusupply.services.resources import ACTIONS as RESOURCE_ACTIONS
from gpusupply.vendors.base import Capabilities


@dataclass(frozen=True, slots=True)
class StatusDisplay:
    symbol: str  # shown next to the word, hidden from screen readers
    tone: str  # ok | busy | idle | ended | bad: a colour on top of the word and symbol
    meaning: str  # one line for the status's title/tooltip and the resource page


_BUSY = "◐"
STATUS_DISPLAY: dict[str, StatusDisplay] = {
    "pending": StatusDisplay(_BUSY, "busy", "Recorded; the vendor has not confirmed a create yet."),
    "provisioning": StatusDisplay(_BUSY, "busy", "The vendor is creating and booting the instance."),
    "running": StatusDisplay("●", "ok", "Up and billing."),
    "stopping": StatusDisplay(_BUSY, "busy", "Stopping on the vendor."),
    "stopped": StatusDisplay("■", "idle", "Stopped; the vendor may still bill its storage."),
    "starting": StatusDisplay(_BUSY, "busy", "Starting on the vendor."),
    "rebooting": StatusDisplay(_BUSY, "busy", "Rebooting on the vendor."),
    "deleting": StatusDisplay(_BUSY, "busy", "Deleting; ends once the vendor confirms the instance is gone."),
    "deleted": StatusDisplay("✓", "ended", "Deleted; the vendor confirmed the instance is gone."),
    "failed": StatusDisplay("✕", "bad", "Provisioning failed; nothing is left on the vendor."),
    "terminated": StatusDisplay("⚠", "bad", "The instance vanished on the vendor (preempted or deleted elsewhere)."),
}
_UNKNOWN = StatusDisplay("?", "busy", "Unknown status.")


def status_display(status: str) -> StatusDisplay:
    return STATUS_DISPLAY.get(status, _UNKNOWN)


@dataclass(frozen=True, slots=True)
class ActionText:
    button: str  # the button that opens the confirmation
    title: str  # the confirmation's heading, "{name}" filled in
    explanation: str
    confirm: str  # the button that does it
    danger: bool


ACTION_TEXT: dict[str, ActionText] = {
    "stop": ActionText("Stop", "Stop {name}?", "The instance shuts down; its disk is kept and you can start it again.", "Stop it", False),
    "start": ActionText("Start", "Start {name}?", "The instance boots again and bills from then on.", "Start it", False),
    "reboot": ActionText("Reboot", "Reboot {name}?", "The instance restarts; running processes end.", "Reboot it", False),
    "delete": ActionText(
        "Delete",
        "Delete {name}?",
        "The instance and its disk are deleted on the vendor. This cannot be undone. "
        "It shows as deleted once the vendor confirms it is gone.",
        "Delete it",
        True,
    ),
}
ACTIONS = tuple(ACTION_TEXT)
ENDED = frozenset(status.value for status in FINAL_STATUSES)
IN_FLIGHT = frozenset({ResourceStatus.STOPPING, ResourceStatus.STARTING, ResourceStatus.REBOOTING})


def available_actions(status: str, capabilities: Capabilities | None) -> list[str]:
    """The buttons a resource shows: what its status allows (the resources service's table) and
    its vendor supports (its declared capabilities). The service checks again when the form is
    sent (the status may have moved meanwhile)."""
    try:
        current = ResourceStatus(status)
    except ValueError:
        return []
    if current in FINAL_STATUSES or current == ResourceStatus.DELETING:
        return []
    actions = [
        action
        for action, (needed, _) in RESOURCE_ACTIONS.items()
        if current == needed and capabilities is not None and capabilities.supports(action)
    ]
    return [*actions, "delete"]


def format_duration(seconds: float | None) -> str:
    """A whole-minute duration ("under a minute", "42 min", "3 h 05 min", "2 d 4 h"): the
    resources list changes at most once a minute because of it."""
    if seconds is None:
        return "—"
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def running_seconds(running_since: datetime | None, ended_at: datetime | None, now: datetime) -> float | None:
    """Time since the vendor first reported the instance running, until it ended (or now)."""
    if running_since is None:
        return None
    return max(0.0, ((ended_at or now) - running_since).total_seconds())


def money(amount: float | None, *, per: str = "") -> str:
    """USD in cents; amounts under 10 cents keep up to 4 decimals so they do not round away."""
    if amount is None:
        return "—"
    if amount == 0 or abs(amount) >= 0.1:
        text = f"${amount:,.2f}"
    else:
        whole, _, decimals = f"{amount:.4f}".partition(".")
        text = f"${whole}.{decimals.rstrip('0').ljust(2, '0')}"
    return f"{text}/{per}" if per else text


def utc_text(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def resource_label(name: str | None, resource_id: object) -> str:
    """What a resource is called in headings and buttons: its name, else its short id."""
    return name or f"resource {str(resource_id)[:8]}"


@dataclass(frozen=True, slots=True)
class ResourceView:
    """One resource as the resources list and the resource page show it."""

    id: str
    label: str
    status: str
    display: StatusDisplay
    gpu: str  # "2 × H100"
    gpu_model: str | None  # the canonical name, when known
    vendor: str
    location: str
    address: str | None  # the SSH command, once the vendor gave an address
    price: str
    running_for: str
    cost_so_far: str  # from domain/costs.py: billed time (vendor-confirmed) x the fixed price
    actions: list[str]
    status_message: str | None
    vendor_status: str | None
    pending_action: str | None
    ended: bool  # deleted, terminated or failed: no address, no actions


def gpu_text(gpu_family: str | None, gpu_type: str | None, gpu_count: int | None) -> str:
    """"2 × H100": the family reads best; the canonical name is shown beside it."""
    return f"{gpu_count or 1} × {gpu_family or gpu_type or 'GPU'}"


def location_text(vendor_region: str | None, region: str | None) -> str:
    if vendor_region and region:
        return f"{vendor_region} ({region})"
    return vendor_region or region or "—"


def resource_view(
    resource: Resource,
    capabilities: Capabilities | None,
    now: datetime,
    *,
    address: str | None,
    cost_so_far: float | None = None,
) -> ResourceView:
    return ResourceView(
        id=str(resource.id),
        label=resource_label(resource.name, resource.id),
        status=resource.status,
        display=status_display(resource.status),
        gpu=gpu_text(resource.gpu_family, resource.gpu_type, resource.gpu_count),
        gpu_model=resource.gpu_type,
        vendor=resource.vendor or "choosing an offer",
        location=location_text(resource.vendor_region, resource.region),
        address=address,
        price=money(resource.price_per_hour, per="h"),
        running_for=format_duration(running_seconds(resource.running_since, resource.ended_at, now)),
        cost_so_far=money(cost_so_far),
        actions=available_actions(resource.status, capabilities),
        status_message=resource.status_message,
        vendor_status=resource.vendor_status,
        pending_action=resource.pending_action,
        ended=resource.status in ENDED,
    )
