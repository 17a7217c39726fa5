"""The resource state machine, instance states as vendors report them, and procurement status.

Resource statuses (ours):

    pending ──create──▶ provisioning ──vendor running──▶ running ◀──▶ stopping/stopped/starting/rebooting
       │                    │                              │
       └──── (any non-terminal) ── delete requested ──▶ deleting ──vendor confirms gone──▶ deleted | failed
                                                           running ── vanished on vendor ──▶ terminated

`failed` is reached only after the vendor confirmed nothing is left (a failed create, or a
provisioning timeout whose instance was deleted). `deleted`, `failed` and `terminated` are final.
"""

from __future__ import annotations

from enum import StrEnum


class ResourceStatus(StrEnum):
    PENDING = "pending"  # intent row written, vendor create not yet confirmed
    PROVISIONING = "provisioning"  # vendor accepted the create; waiting for running + address
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    REBOOTING = "rebooting"
    DELETING = "deleting"  # engine is deleting on the vendor until it confirms the instance is gone
    DELETED = "deleted"
    FAILED = "failed"
    TERMINATED = "terminated"  # the instance vanished outside our control (preempted, deleted elsewhere)


FINAL_STATUSES = frozenset({ResourceStatus.DELETED, ResourceStatus.FAILED, ResourceStatus.TERMINATED})
# Statuses in which a vendor instance may exist and bill.
LIVE_STATUSES = frozenset(set(ResourceStatus) - FINAL_STATUSES)
# Statuses the engine must drive to an end on its own.
TRANSITIONAL_STATUSES = frozenset(
    {
        ResourceStatus.PENDING,
        ResourceStatus.PROVISIONING,
        ResourceStatus.STOPPING,
        ResourceStatus.STARTING,
        ResourceStatus.REBOOTING,
        ResourceStatus.DELETING,
    }
)

_ALLOWED: dict[ResourceStatus, frozenset[ResourceStatus]] = {
    ResourceStatus.PENDING: frozenset({ResourceStatus.PROVISIONING, ResourceStatus.DELETING, ResourceStatus.FAILED}),
    ResourceStatus.PROVISIONING: frozenset(
        {ResourceStatus.RUNNING, ResourceStatus.DELETING, ResourceStatus.TERMINATED, ResourceStatus.PENDING}
    ),
    ResourceStatus.RUNNING: frozenset(
        {
            ResourceStatus.STOPPING,
            ResourceStatus.REBOOTING,
            ResourceStatus.DELETING,
            ResourceStatus.TERMINATED,
            ResourceStatus.STOPPED,
        }
    ),
    ResourceStatus.STOPPING: frozenset({ResourceStatus.STOPPED, ResourceStatus.RUNNING, ResourceStatus.DELETING, ResourceStatus.TERMINATED}),
    ResourceStatus.STOPPED: frozenset({ResourceStatus.STARTING, ResourceStatus.DELETING, ResourceStatus.TERMINATED, ResourceStatus.RUNNING}),
    ResourceStatus.STARTING: frozenset({ResourceStatus.RUNNING, ResourceStatus.STOPPED, ResourceStatus.DELETING, ResourceStatus.TERMINATED}),
    ResourceStatus.REBOOTING: frozenset({ResourceStatus.RUNNING, ResourceStatus.DELETING, ResourceStatus.TERMINATED}),
    ResourceStatus.DELETING: frozenset({ResourceStatus.DELETED, ResourceStatus.FAILED}),
    ResourceStatus.DELETED: frozenset(),
    ResourceStatus.FAILED: frozenset(),
    # Only the reconciler's revival: the instance of a resource ended on an observation shows up
    # again on the vendor (engine/reconciler.py). `deleted` and `failed` never come back.
    ResourceStatus.TERMINATED: frozenset({ResourceStatus.RUNNING, ResourceStatus.STOPPED}),
}


def can_transition(src: ResourceStatus, dst: ResourceStatus) -> bool:
    return src == dst or dst in _ALLOWED[src]


class InstanceState(StrEnum):
    """A vendor instance's state, normalized. Each adapter maps its vendor's words onto these."""

    PROVISIONING = "provisioning"  # being created, booting, loading the image
    RUNNING = "running"  # up; has an address when the vendor gives one
    STOPPING = "stopping"
    STOPPED = "stopped"
    REBOOTING = "rebooting"
    TERMINATING = "terminating"  # the vendor is deleting it
    TERMINATED = "terminated"  # gone or deleted on the vendor
    ERROR = "error"  # exited / failed on the vendor; still exists and may bill
    UNKNOWN = "unknown"  # the vendor itself does not know (no heartbeat)


class ProcurementStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING_STARTED = "provisioning_started"
    PROVISIONING_IN_PROGRESS = "provisioning_in_progress"
    READY = "ready"
    FAILED = "failed"


def procurement_status(resource_statuses: list[ResourceStatus], any_vendor_create_accepted: bool) -> ProcurementStatus:
    """Derive a procurement's status from its resources (pure; shown by /offers/{id}/status)."""
    if not resource_statuses:
        return ProcurementStatus.PENDING
    if all(s == ResourceStatus.FAILED for s in resource_statuses):
        return ProcurementStatus.FAILED
    live = [s for s in resource_statuses if s != ResourceStatus.FAILED]
    if live and all(s in (ResourceStatus.RUNNING, ResourceStatus.STOPPED, ResourceStatus.STOPPING,
                          ResourceStatus.STARTING, ResourceStatus.REBOOTING, ResourceStatus.DELETING,
                          ResourceStatus.DELETED, ResourceStatus.TERMINATED) for s in live):
        return ProcurementStatus.READY
    if any(s == ResourceStatus.PROVISIONING for s in live):
        return ProcurementStatus.PROVISIONING_IN_PROGRESS
    if any_vendor_create_accepted:
        return ProcurementStatus.PROVISIONING_STARTED
    return ProcurementStatus.PENDING
