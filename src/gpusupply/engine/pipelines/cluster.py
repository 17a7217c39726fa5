"""Cluster: the all-or-nothing rule over a cluster's nodes (docs/engine.md, "Clusters").

A cluster resource (`resource_type = "cluster"`) has no vendor instance of its own. Its nodes are
ordinary resources (`cluster_id` names the cluster), written with it in one transaction before
any vendor call, each created, recovered, provisioned and deleted by the ordinary pipelines under
its own marker. This pipeline makes no vendor call: each step reads the nodes inside the apply
transaction (after locking them, so no node changes under the decision) and

- pending / provisioning: `running` once every node runs with an address; as soon as one node
  failed, vanished or is being cleaned up, or when the provisioning deadline passes with a node
  not running, it rolls back: every node is handed to deletion and the cluster moves to
  `deleting` with final status `failed` and the reason naming the node;
- running / stopped / in an action: follows its nodes (all stopped -> stopped, ...); a node that
  ends or is being deleted takes the whole cluster with it (half a cluster is useless and bills);
- deleting: hands every live node to deletion (the cluster's final status) and ends when every
  node has, on the vendor's word: `deleted`, or `failed` with the reason of the rollback.

Crash safety comes from the nodes: each node's row exists, with its marker, before any create, so
after a SIGKILL anywhere the ordinary recovery finds every node that was created, and this step,
which is a pure function of the rows, carries on (complete cluster, or rollback to nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.states import FINAL_STATUSES, ResourceStatus, can_transition
from gpusupply.db.models import Procurement, Resource
from gpusupply.domain.events import change_status
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines.common import age, hand_to_deletion

PIPELINE = "cluster"
RESOURCE_TYPE = "cluster"
S = ResourceStatus
STATUSES = tuple(s.value for s in (S.PENDING, S.PROVISIONING, S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING, S.REBOOTING, S.DELETING))
# A cluster follows its nodes through these, when every live node is in the same one.
_FOLLOWED = frozenset({S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING, S.REBOOTING})
_FINAL = frozenset(s.value for s in FINAL_STATUSES)


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    now = ctx.now()

    async def merge(session: AsyncSession, cluster: Resource) -> None:
        nodes = await lock_nodes(session, cluster.id, now)
        status = S(cluster.status)
        if status == S.DELETING:
            settle_deletion(session, ctx, cluster, nodes, now)
        elif status in (S.PENDING, S.PROVISIONING):
            gather(session, ctx, cluster, nodes, now)
        else:
            follow(session, ctx, cluster, nodes, now)
        if cluster.status == S.FAILED.value:
            await _fail_procurement(session, cluster)

    await leases.apply(ctx.db, lease, merge)


async def lock_nodes(session: AsyncSession, cluster_id: Any, now: datetime) -> list[Resource]:
    """The cluster's nodes as they are now, locked for this transaction (a write first: SQLite's
    write lock, PostgreSQL's row locks), so no node pipeline or API call changes one meanwhile."""
    await session.execute(
        update(Resource).where(Resource.cluster_id == cluster_id).values(updated_at=now).execution_options(synchronize_session=False)
    )
    found = await session.execute(
        select(Resource).where(Resource.cluster_id == cluster_id).order_by(Resource.name, Resource.id).execution_options(populate_existing=True)
    )
    return list(found.scalars())


def node_label(node: Resource) -> str:
    return f"node {node.name or node.id} ({node.id})"


def broken_node(nodes: list[Resource]) -> tuple[Resource, str] | None:
    """The first node that can no longer be part of the cluster, and why."""
    for node in nodes:
        if node.status in _FINAL or node.status == S.DELETING.value:
            why = node.status_message or f"it is {node.status}"
            return node, f"{node_label(node)} {node.status}: {why}"
    return None


def gather(session: AsyncSession, ctx: EngineContext, cluster: Resource, nodes: list[Resource], now: datetime) -> None:
    if not nodes:
        roll_back(session, cluster, nodes, "the cluster has no nodes", now)
        return
    broken = broken_node(nodes)
    if broken is not None:
        roll_back(session, cluster, nodes, broken[1], now)
        return
    running = [n for n in nodes if n.status == S.RUNNING.value and (n.external_ip or n.ssh_host)]
    deadline = ctx.settings.provisioning_timeout_seconds
    if len(running) == len(nodes):
        _move(session, cluster, S.PROVISIONING, progress(nodes), now)
        change_status(session, cluster, S.RUNNING, f"every node runs: {progress(nodes)}", at=now)
        cluster.running_since = max((n.running_since for n in nodes if n.running_since), default=now)
        cluster.next_attempt_at = now + timedelta(seconds=ctx.settings.refresh_interval_seconds)
        return
    if age(now, cluster.created_at) > deadline:
        late = ", ".join(f"{node_label(n)} {n.status}" for n in nodes if n not in running)
        roll_back(session, cluster, nodes, f"not every node came up within {deadline:.0f} s ({late})", now)
        return
    if any(n.status != S.PENDING.value or n.create_attempted_at is not None for n in nodes):
        _move(session, cluster, S.PROVISIONING, progress(nodes), now)
    cluster.status_message = progress(nodes)
    cluster.next_attempt_at = now + timedelta(seconds=ctx.settings.provisioning_poll_seconds)


def roll_back(session: AsyncSession, cluster: Resource, nodes: list[Resource], reason: str, now: datetime) -> None:
    """All or nothing: every node is deleted (each confirmed by the vendor), then the cluster fails."""
    message = f"cluster rolled back: {reason}"
    hand_to_deletion(session, cluster, message, now=now, final_status=S.FAILED)
    for node in nodes:
        if node.status not in _FINAL:
            hand_to_deletion(session, node, f"{message}; deleting every node of the cluster", now=now, final_status=S.FAILED)


def follow(session: AsyncSession, ctx: EngineContext, cluster: Resource, nodes: list[Resource], now: datetime) -> None:
    broken = broken_node(nodes)
    if broken is not None or not nodes:
        node, why = broken if broken is not None else (None, "the cluster has no nodes")
        # Deleted on purpose (a budget, a guardrail): the cluster is deleted; anything else failed it.
        deleted = node is not None and (node.final_status or node.status) == S.DELETED.value
        final = S.DELETED if deleted else S.FAILED
        hand_to_deletion(session, cluster, f"{why}; the whole cluster is deleted", now=now, final_status=final)
        for other in nodes:
            if other.status not in _FINAL:
                hand_to_deletion(session, other, f"cluster {cluster.name} is deleted: {why}", now=now, final_status=final)
        return
    statuses = {S(n.status) for n in nodes}
    target = statuses.pop() if len(statuses) == 1 else next((s for s in (S.STOPPING, S.STARTING, S.REBOOTING) if s in statuses), None)
    if target is not None and target in _FOLLOWED and can_transition(S(cluster.status), target):
        change_status(session, cluster, target, progress(nodes), at=now)
    cluster.status_message = progress(nodes)
    settled = len(statuses) <= 1 and target in (S.RUNNING, S.STOPPED)
    wait = ctx.settings.refresh_interval_seconds if settled else ctx.settings.provisioning_poll_seconds
    cluster.next_attempt_at = now + timedelta(seconds=wait)


def settle_deletion(session: AsyncSession, ctx: EngineContext, cluster: Resource, nodes: list[Resource], now: datetime) -> None:
    final = S(cluster.final_status or S.DELETED.value)
    for node in nodes:
        if node.status not in _FINAL:
            hand_to_deletion(session, node, f"cluster {cluster.name} is being deleted", now=now, final_status=final)
    left = [n for n in nodes if n.status not in _FINAL]
    if left:
        cluster.next_attempt_at = now + timedelta(seconds=ctx.settings.provisioning_poll_seconds)
        return
    reason = cluster.status_message if final == S.FAILED and cluster.status_message else "cluster deleted"
    change_status(session, cluster, final, f"{reason}; every node deleted, confirmed by the vendor", at=now)


def progress(nodes: list[Resource]) -> str:
    running = sum(1 for n in nodes if n.status == S.RUNNING.value)
    return f"{running}/{len(nodes)} instances running"


def _move(session: AsyncSession, cluster: Resource, status: S, reason: str, now: datetime) -> None:
    if cluster.status != status.value and can_transition(S(cluster.status), status):
        change_status(session, cluster, status, reason, at=now)


async def _fail_procurement(session: AsyncSession, cluster: Resource) -> None:
    await session.execute(
        update(Procurement)
        .where(Procurement.id == cluster.procurement_id, Procurement.failure_reason.is_(None))
        .values(failure_reason=cluster.status_message)
        .execution_options(synchronize_session=False)
    )
