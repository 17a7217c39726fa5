"""The cluster pipeline's all-or-nothing rules on rows in memory (the engine's end-to-end runs are
in tests/api/test_clusters.py and the kill tests): which node breaks a cluster, what a rollback
hands to deletion, and how a live cluster follows its nodes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gpusupply.db.models import Resource
from gpusupply.engine.pipelines import cluster as rules

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CTX: Any = SimpleNamespace(settings=SimpleNamespace(
    refresh_interval_seconds=30.0, provisioning_poll_seconds=2.0, provisioning_timeout_seconds=600.0, max_failover_attempts=3,
))


class Session:
    """Collects what a decision adds (events, webhook outbox rows); the rules only add."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, item: Any) -> None:
        self.added.append(item)


def row(status: str, **fields: Any) -> Resource:
    values = dict(id=uuid.uuid4(), tenant_id=uuid.uuid4(), status=status, name=fields.pop("name", "c"), created_at=NOW,
                  attempts=[], offer_id=None, status_message=None, final_status=None, running_since=None, ended_at=None,
                  external_ip=None, ssh_host=None, create_attempted_at=None, delete_requested_at=None, vendor="fal")
    values.update(fields)
    return Resource(**values)


def nodes(*statuses: str, **fields: Any) -> list[Resource]:
    return [row(s, name=f"c-node-{n}", **fields) for n, s in enumerate(statuses, start=1)]


def test_every_node_running_with_an_address_makes_the_cluster_running() -> None:
    cluster = row("provisioning")
    members = nodes("running", "running", external_ip="203.0.113.9", running_since=NOW)
    rules.gather(Session(), CTX, cluster, members, NOW, failover=False)  # type: ignore[arg-type]
    assert cluster.status == "running" and cluster.running_since == NOW and cluster.status_message == "every node runs: 2/2 nodes running"


def test_a_node_running_without_an_address_is_not_ready_yet() -> None:
    cluster = row("pending")
    members = nodes("running", "provisioning")
    members[0].external_ip = "203.0.113.9"
    rules.gather(Session(), CTX, cluster, members, NOW, failover=False)  # type: ignore[arg-type]
    assert cluster.status == "provisioning" and cluster.status_message == "1/2 nodes running"
    assert cluster.next_attempt_at == NOW + timedelta(seconds=2)


@pytest.mark.parametrize("broken", ["failed", "terminated", "deleting"])
def test_one_broken_node_rolls_back_every_node(broken: str) -> None:
    cluster = row("provisioning")
    members = nodes("running", broken, "pending", external_ip="203.0.113.9")
    members[1].status_message = "Insufficient capacity"
    rules.gather(Session(), CTX, cluster, members, NOW, failover=False)  # type: ignore[arg-type]
    assert (cluster.status, cluster.final_status) == ("deleting", "failed")
    assert f"c-node-2 ({members[1].id}) {broken}: Insufficient capacity" in (cluster.status_message or "")
    assert [(m.status, m.final_status) for m in (members[0], members[2])] == [("deleting", "failed")] * 2


def test_the_deadline_rolls_back_a_cluster_whose_node_never_came_up() -> None:
    cluster = row("provisioning", created_at=NOW - timedelta(seconds=601))
    members = nodes("running", "provisioning", external_ip="203.0.113.9")
    rules.gather(Session(), CTX, cluster, members, NOW, failover=False)  # type: ignore[arg-type]
    assert cluster.status == "deleting" and "not every node came up within 600 s" in (cluster.status_message or "")
    assert {m.status for m in members} == {"deleting"}


def test_by_spec_a_broken_placement_is_left_for_the_next_one() -> None:
    offer = uuid.uuid4()
    cluster = row("provisioning", offer_id=offer, offer_snapshot={"vendor": "fal"},
                  attempts=[{"offer_id": str(offer), "outcome": "trying", "vendor": "fal"}])
    members = nodes("running", "failed", external_ip="203.0.113.9", offer_id=offer)
    rules.gather(Session(), CTX, cluster, members, NOW, failover=True)  # type: ignore[arg-type]
    assert cluster.status == "pending" and cluster.offer_id is None and cluster.offer_snapshot is None
    assert cluster.attempts[-1]["outcome"] == "failed"
    assert members[0].status == "deleting" and members[1].status == "failed"


def test_a_running_cluster_follows_its_nodes_and_ends_whole() -> None:
    cluster = row("running")
    members = nodes("stopped", "stopped")
    rules.follow(Session(), CTX, cluster, members, NOW)  # type: ignore[arg-type]
    assert cluster.status == "stopped" and cluster.next_attempt_at == NOW + timedelta(seconds=30)
    members = nodes("running", "terminated")
    cluster = row("running")
    rules.follow(Session(), CTX, cluster, members, NOW)  # type: ignore[arg-type]
    assert (cluster.status, cluster.final_status, members[0].status) == ("deleting", "failed", "deleting")
    budget = nodes("running", "deleting")
    budget[1].final_status = "deleted"
    cluster = row("running")
    rules.follow(Session(), CTX, cluster, budget, NOW)  # type: ignore[arg-type]
    assert (cluster.status, cluster.final_status) == ("deleting", "deleted")


def test_a_deleting_cluster_ends_only_when_every_node_has() -> None:
    cluster = row("deleting", final_status="deleted")
    members = nodes("running", "deleted")
    rules.settle_deletion(Session(), CTX, cluster, members, NOW)  # type: ignore[arg-type]
    assert cluster.status == "deleting" and members[0].status == "deleting"
    members[0].status = "deleted"
    rules.settle_deletion(Session(), CTX, cluster, members, NOW)  # type: ignore[arg-type]
    assert cluster.status == "deleted"
