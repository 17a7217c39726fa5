"""The resource state machine and the procurement status derived from it."""

from __future__ import annotations

import pytest

from gpusupply.core.states import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    ProcurementStatus,
    ResourceStatus,
    can_transition,
    procurement_status,
)

S = ResourceStatus


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        (S.PENDING, S.PROVISIONING, True),
        (S.PENDING, S.DELETING, True),
        (S.PENDING, S.FAILED, True),
        (S.PENDING, S.RUNNING, False),
        (S.PROVISIONING, S.RUNNING, True),
        (S.RUNNING, S.STOPPING, True),
        (S.RUNNING, S.REBOOTING, True),
        (S.RUNNING, S.STARTING, False),
        (S.STOPPED, S.STARTING, True),
        (S.STOPPED, S.STOPPING, False),
        (S.STOPPING, S.DELETING, True),
        (S.STARTING, S.DELETING, True),
        (S.REBOOTING, S.DELETING, True),
        (S.DELETING, S.DELETED, True),
        (S.DELETING, S.FAILED, True),
        (S.DELETING, S.RUNNING, False),
        (S.DELETED, S.DELETING, False),
        (S.TERMINATED, S.RUNNING, True),  # revived: its instance showed up again (engine/reconciler.py)
        (S.TERMINATED, S.STOPPED, True),
        (S.TERMINATED, S.DELETING, False),
        (S.DELETED, S.RUNNING, False),  # what the user deleted never comes back
        (S.FAILED, S.RUNNING, False),
        (S.RUNNING, S.RUNNING, True),  # no change is always allowed
    ],
)
def test_transitions(src: ResourceStatus, dst: ResourceStatus, allowed: bool) -> None:
    assert can_transition(src, dst) is allowed


def test_final_statuses_go_nowhere() -> None:
    """Except the revival of a `terminated` resource whose instance shows up again (engine/reconciler.py)."""
    revival = {S.RUNNING, S.STOPPED}
    for final in FINAL_STATUSES:
        allowed = {dst for dst in ResourceStatus if dst != final and can_transition(final, dst)}
        assert allowed == (revival if final == S.TERMINATED else set()), final


def test_every_live_status_can_be_deleted() -> None:
    for status in LIVE_STATUSES - {S.DELETING}:
        assert can_transition(status, S.DELETING), status


@pytest.mark.parametrize(
    ("statuses", "accepted", "expected"),
    [
        ([], False, ProcurementStatus.PENDING),
        ([S.PENDING], False, ProcurementStatus.PENDING),
        ([S.PENDING], True, ProcurementStatus.PROVISIONING_STARTED),
        ([S.PROVISIONING], True, ProcurementStatus.PROVISIONING_IN_PROGRESS),
        ([S.RUNNING], True, ProcurementStatus.READY),
        ([S.RUNNING, S.PROVISIONING], True, ProcurementStatus.PROVISIONING_IN_PROGRESS),
        ([S.RUNNING, S.RUNNING], True, ProcurementStatus.READY),
        ([S.FAILED], False, ProcurementStatus.FAILED),
        ([S.FAILED, S.RUNNING], True, ProcurementStatus.READY),
        ([S.STOPPED], True, ProcurementStatus.READY),
        ([S.DELETED], True, ProcurementStatus.READY),
    ],
)
def test_procurement_status(statuses: list[ResourceStatus], accepted: bool, expected: ProcurementStatus) -> None:
    assert procurement_status(statuses, accepted) == expected
