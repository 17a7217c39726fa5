"""Status changes and the event history. Every status change of a resource goes through
`change_status`, so the history (`GET /resources/{id}/events`) is complete by construction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.fleets import counts
from gpusupply.core.states import FINAL_STATUSES, ResourceStatus, can_transition
from gpusupply.db.models import Event, Resource, WebhookOutbox, utcnow
from gpusupply.domain.hints import hint_after_commit
from gpusupply.domain.webhooks import OUTBOX_KINDS


class IllegalTransition(Exception):
    pass


def add_event(
    session: AsyncSession,
    *,
    kind: str,
    resource: Resource | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    vendor: str | None = None,
    at: datetime | None = None,
    tenant_id: UUID | None = None,
    fleet_id: UUID | None = None,
) -> Event:
    """Record an event. `tenant_id` is for events about a tenant but no resource (budget alerts);
    `fleet_id` for a fleet's own events (about one member, or none)."""
    event = Event(
        fleet_id=fleet_id,
        resource_id=resource.id if resource else None,
        tenant_id=resource.tenant_id if resource else tenant_id,
        vendor=vendor or (resource.vendor if resource else None),
        at=at or utcnow(),
        kind=kind,
        reason=reason,
        data=data,
    )
    session.add(event)
    if kind in OUTBOX_KINDS:  # webhooks: an outbox row in the event's own transaction (docs/cost.md)
        session.add(WebhookOutbox(event=event))
    return event


ENDED_ON_VENDOR = frozenset({ResourceStatus.DELETED, ResourceStatus.TERMINATED})


def change_status(
    session: AsyncSession,
    resource: Resource,
    new_status: ResourceStatus,
    reason: str | None = None,
    *,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> bool:
    """Move `resource` to `new_status` and record the event. Returns False if it already was there.

    Raises IllegalTransition for a move the state machine forbids (a bug, not user input).
    """
    old = ResourceStatus(resource.status)
    if old == new_status:
        return False
    if not can_transition(old, new_status):
        raise IllegalTransition(f"resource {resource.id}: {old} -> {new_status} is not allowed")
    now = at or utcnow()
    resource.status = new_status.value
    if reason is not None:
        resource.status_message = reason
    if new_status in FINAL_STATUSES and resource.ended_at is None and resource.running_since is not None:
        resource.ended_at = now
    if new_status in ENDED_ON_VENDOR:
        # The instance is gone: its address would point at someone else's machine, or nowhere.
        resource.external_ip = resource.ssh_host = resource.ssh_port = None
    event = add_event(session, kind="status_change", resource=resource, reason=reason, data=data, at=now)
    event.from_status, event.to_status = old.value, new_status.value
    if resource.fleet_id is not None and counts(old.value) != counts(new_status.value):
        hint_after_commit(session)  # its fleet replaces it (or, revived, deletes an extra) at once: engine/fleets.py
    return True
