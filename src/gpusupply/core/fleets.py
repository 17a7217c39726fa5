"""Fleets, the pure part: which members count toward the size, what a lost member was, which
members a scale-down deletes, how replacements are placed, and the price each new member may
cost. No I/O: the fleet job (engine/fleets.py) and the procure pipeline's offer choice apply these.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from gpusupply.core.offers import Offer
from gpusupply.core.states import ResourceStatus

OnPreemption = Literal["replace", "shrink"]
Placement = Literal["spread", "pack"]
ON_PREEMPTION: tuple[str, ...] = ("replace", "shrink")
PLACEMENTS: tuple[str, ...] = ("spread", "pack")
MAX_FLEET_SIZE = 1000
RETRY_BASE_SECONDS = 5.0


class FleetStatus(StrEnum):
    ACTIVE = "active"  # at its size, or getting there
    DEGRADED = "degraded"  # cannot reach its size now (status_message says why); retried with backoff
    DELETING = "deleting"  # deleting every member; deleted once every vendor confirmed
    DELETED = "deleted"


LIVE_FLEET_STATUSES = (FleetStatus.ACTIVE.value, FleetStatus.DEGRADED.value, FleetStatus.DELETING.value)

# Members that count toward the size: every live status but `deleting` (a member being deleted is
# replaced at once; the target plus the members being deleted is the most that can exist).
COUNTING_STATUSES = frozenset(
    {
        ResourceStatus.PENDING,
        ResourceStatus.PROVISIONING,
        ResourceStatus.RUNNING,
        ResourceStatus.STOPPING,
        ResourceStatus.STOPPED,
        ResourceStatus.STARTING,
        ResourceStatus.REBOOTING,
    }
)
COUNTING_STATUS_VALUES = tuple(sorted(s.value for s in COUNTING_STATUSES))


def counts(status: str) -> bool:
    return status in COUNTING_STATUS_VALUES


class Loss(StrEnum):
    """Why a member stopped counting."""

    PREEMPTED = "preempted"  # the vendor took it back or it vanished (terminated), or it failed after running
    NEVER_RAN = "never_ran"  # its procurement failed: no offer could be created
    DELETED = "deleted"  # deleted by hand (or by a guardrail): replaced, never counted as the vendor's doing


@dataclass(frozen=True, slots=True)
class Member:
    """What the fleet reads of a member resource."""

    id: Any
    status: str
    vendor: str | None
    vendor_region: str | None
    price_per_hour: float | None
    created_at: datetime
    running_since: datetime | None = None
    vendor_instance_id: str | None = None
    final_status: str | None = None  # what a deletion ends in: deleted (asked) or failed (the engine's cleanup)


def loss_kind(member: Member) -> Loss:
    """What ending (or deleting) a member was."""
    failed = member.status == ResourceStatus.FAILED.value or (
        member.status in (ResourceStatus.DELETING.value, ResourceStatus.DELETED.value) and member.final_status == ResourceStatus.FAILED.value
    )
    if failed:
        return Loss.PREEMPTED if member.running_since is not None else Loss.NEVER_RAN
    if member.status in (ResourceStatus.DELETING.value, ResourceStatus.DELETED.value):
        return Loss.DELETED
    return Loss.PREEMPTED


# Which members a scale-down deletes first: those that cost nothing yet, then those not running,
# the most expensive, the newest.
_DELETE_ORDER = {
    ResourceStatus.PENDING.value: 0,
    ResourceStatus.PROVISIONING.value: 1,
    ResourceStatus.STOPPED.value: 2,
    ResourceStatus.STOPPING.value: 3,
    ResourceStatus.STARTING.value: 4,
    ResourceStatus.REBOOTING.value: 5,
    ResourceStatus.RUNNING.value: 6,
}


def extras_to_delete(members: Sequence[Member], size: int) -> list[Member]:
    """The counting members beyond `size` that a scale-down deletes."""
    counting = [m for m in members if counts(m.status)]
    extra = len(counting) - max(size, 0)
    if extra <= 0:
        return []
    ranked = sorted(
        counting,
        key=lambda m: (
            _DELETE_ORDER.get(m.status, 9),
            m.vendor_instance_id is not None,
            -(m.price_per_hour or 0.0),
            -m.created_at.timestamp(),
        ),
    )
    return ranked[:extra]


def member_price_ceiling(max_hourly_spend: float | None, committed_hourly: float, new_members: int) -> float | None:
    """USD/h each of `new_members` may cost so the fleet stays within its cap, given what its
    counting members cost (or may cost) already; None without a cap. Shared evenly: whatever the
    offers, the sum never passes the cap."""
    if max_hourly_spend is None:
        return None
    if new_members <= 0:
        return 0.0
    return max(0.0, max_hourly_spend - committed_hourly) / new_members


def affordable_count(max_hourly_spend: float | None, committed_hourly: float, wanted: int, cheapest: float) -> int:
    """How many of `wanted` new members fit under the cap at the cheapest matching price."""
    if max_hourly_spend is None or wanted <= 0:
        return max(wanted, 0)
    room = max_hourly_spend - committed_hourly + 1e-9
    if cheapest <= 0:
        return wanted
    return max(0, min(wanted, math.floor(room / cheapest)))


def member_spec(spec: dict[str, Any], price_ceiling: float | None) -> dict[str, Any]:
    """The procurement spec of a new member: the fleet's, its price per GPU-hour capped so the
    member costs at most `price_ceiling` USD/h (the fleet's spend cap shared out)."""
    document = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    if price_ceiling is None:
        return document
    compute = document.setdefault("compute", {})
    per_gpu = price_ceiling / max(int(compute.get("gpu_count") or 1), 1)
    current = compute.get("max_price_per_gpu_hour")
    compute["max_price_per_gpu_hour"] = round(per_gpu if current is None else min(float(current), per_gpu), 6)
    return document


# ----- where replacements go -----------------------------------------------------------------------
VendorRegion = tuple[str, str]


def active_cooldowns(cooldowns: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The entries still in force (`until` after now)."""
    return [c for c in cooldowns if datetime.fromisoformat(str(c["until"])) > now]


def add_cooldown(cooldowns: Iterable[dict[str, Any]], vendor: str, vendor_region: str | None, now: datetime, seconds: float) -> list[dict[str, Any]]:
    """The list with (vendor, region) avoided until now + seconds (one entry per pair)."""
    kept = [c for c in active_cooldowns(cooldowns, now) if (c["vendor"], c["vendor_region"]) != (vendor, vendor_region or "")]
    if seconds <= 0:
        return kept
    return [*kept, {"vendor": vendor, "vendor_region": vendor_region or "", "until": (now + timedelta(seconds=seconds)).isoformat()}]


@dataclass(frozen=True, slots=True)
class PlacementPreference:
    """How a member's offer is chosen among those matching its spec."""

    placement: str  # spread | pack
    avoid: frozenset[VendorRegion]  # cooling down after a preemption
    placed: Counter[VendorRegion]  # where the other counting members are
    # Older members still choosing their offer: a member chooses after them, so that it sees where
    # they went (members chosen at the same moment would all see an empty fleet).
    older_choosing: int = 0


def rank_offers(offers: Sequence[tuple[str, Offer]], preference: PlacementPreference) -> list[tuple[str, Offer]]:
    """`offers` (cheapest first) in the order a member should try them: offers outside a
    cooling-down vendor-region first (the others stay, last, for when nothing else exists); then,
    `spread`, vendor-regions with fewer of the fleet's members first, or, `pack`, those with more;
    then cheapest first."""

    def key(item: tuple[int, tuple[str, Offer]]) -> tuple[int, int, int]:
        index, (_, offer) = item
        where = (offer.vendor, offer.vendor_region)
        together = preference.placed.get(where, 0)
        return (where in preference.avoid, together if preference.placement == "spread" else -together, index)

    return [item for _, item in sorted(enumerate(offers), key=key)]


def retry_seconds(retry_count: int, cap: float) -> float:
    """The wait before a fleet that could not reach its size tries again: 5 s, doubling, capped."""
    return float(min(cap, RETRY_BASE_SECONDS * 2 ** max(retry_count - 1, 0)))
