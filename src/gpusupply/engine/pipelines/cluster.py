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

By spec, the cluster starts without an offer: the step picks the cheapest untried cluster offer
(a placement: a fal sector, a region) and writes every node's row with it in one transaction.
When a placement rolls back and failovers remain (`max_failover_attempts`), its nodes are deleted
(each confirmed) and, once none is left, the next cheapest placement gets new nodes; the earlier
placement's nodes stay linked, `failed`. Each placement's nodes carry its offer id.

Crash safety comes from the nodes: each node's row exists, with its marker, before any create, so
after a SIGKILL anywhere the ordinary recovery finds every node that was created, and this step,
which is a pure function of the rows, carries on (complete cluster, or rollback to nothing).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.states import FINAL_STATUSES, ResourceStatus, can_transition
from gpusupply.db.models import Procurement, Resource
from gpusupply.domain.clusters import current_nodes
from gpusupply.domain.events import change_status
from gpusupply.domain.hints import hint
from gpusupply.domain.intents import add_cluster_nodes, claim_offer
from gpusupply.engine import leases
from gpusupply.engine.context import EngineContext
from gpusupply.engine.pipelines import offers as attempts_
from gpusupply.engine.pipelines.common import (
    age,
    degraded_vendors,
    hand_to_deletion,
    note_event,
    procurement_spec,
    take_first_free_offer,
)

PIPELINE = "cluster"
RESOURCE_TYPE = "cluster"
S = ResourceStatus
STATUSES = tuple(s.value for s in (S.PENDING, S.PROVISIONING, S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING, S.REBOOTING, S.DELETING))
# A cluster follows its nodes through these, when every live node is in the same one.
_FOLLOWED = frozenset({S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING, S.REBOOTING})
_FINAL = frozenset(s.value for s in FINAL_STATUSES)


async def step(ctx: EngineContext, lease: leases.Lease, row: Resource) -> None:
    spec = await procurement_spec(ctx.db, row.procurement_id)
    if row.status in (S.PENDING.value, S.PROVISIONING.value) and row.offer_snapshot is None:
        await place(ctx, lease, row, spec)
        return
    now = ctx.now()

    async def merge(session: AsyncSession, cluster: Resource) -> None:
        nodes = await lock_nodes(session, cluster.id, now)
        status = S(cluster.status)
        if status == S.DELETING:
            settle_deletion(session, ctx, cluster, nodes, now)
        elif status in (S.PENDING, S.PROVISIONING) and cluster.offer_snapshot is not None:
            gather(session, ctx, cluster, current_nodes(cluster, nodes), now, failover=spec is not None)
        elif status not in (S.PENDING, S.PROVISIONING):
            follow(session, ctx, cluster, current_nodes(cluster, nodes), now)
        if cluster.status == S.FAILED.value:
            await _fail_procurement(session, cluster)

    await leases.apply(ctx.db, lease, merge)
    hint()  # nodes handed to deletion (or the next placement's) are due now: wake this process's pipelines


# ----- by spec: choosing a placement --------------------------------------------------------------


async def place(ctx: EngineContext, lease: leases.Lease, row: Resource, spec: dict[str, Any] | None) -> None:
    """Pick the cheapest untried cluster offer and write every node's row with it, once the nodes
    of an earlier placement are all gone; or fail when none is left."""
    now = ctx.now()
    async with ctx.db.session() as session:
        statuses = list((await session.execute(select(Resource.status).where(Resource.cluster_id == row.id))).scalars())
    if any(status not in _FINAL for status in statuses):
        await _later(ctx, lease, ctx.settings.provisioning_poll_seconds, "waiting until the last placement's nodes are deleted")
        return
    attempts = list(row.attempts or [])
    if spec is None or ctx.catalog is None:
        await _end_unplaced(ctx, lease, "a cluster without an offer needs a spec and the offer catalog")
        return
    if age(now, row.created_at) > ctx.settings.provisioning_timeout_seconds or attempts_.failed_count(attempts) >= ctx.settings.max_failover_attempts:
        await _end_unplaced(ctx, lease, attempts_.failure_summary(attempts, searched=-1))
        return
    try:
        query = attempts_.spec_to_query(spec)
    except attempts_.BadSpec as exc:
        await _end_unplaced(ctx, lease, f"invalid spec: {exc}")
        return
    result = await ctx.catalog.search(query, limit=ctx.settings.max_failover_attempts + len(attempts) + 25)
    offers = [(str(s.offer_id), s.offer) for s in result.offers if s.status == "available" and s.offer.node_count > 1]
    degraded = await degraded_vendors(ctx.db)
    candidate, placed, _ = await take_first_free_offer(ctx, lease, offers, attempts, degraded, lambda c, _: _merge_place(ctx, c))
    if candidate is None:
        if result.partial and (row.retry_count or 0) < 3:
            await _later(ctx, lease, 2.0 * (1 + (row.retry_count or 0)), f"offer catalog partial: {result.failed_vendors}", count=True)
            return
        await _end_unplaced(ctx, lease, attempts_.failure_summary(attempts, searched=len(offers)))
        return
    await leases.release(ctx.db, [lease])
    if placed == "placed":
        discard = getattr(ctx.catalog, "discard", None)
        if discard is not None:
            discard(uuid.UUID(candidate.offer_id))


def _merge_place(ctx: EngineContext, candidate: attempts_.Candidate) -> leases.Merge[str]:
    now = ctx.now()
    offer = candidate.offer

    async def merge(session: AsyncSession, fresh: Resource) -> str:
        if fresh.status not in (S.PENDING.value, S.PROVISIONING.value) or fresh.offer_snapshot is not None:
            return "moved"
        if not await claim_offer(session, uuid.UUID(candidate.offer_id), fresh.tenant_id, now):
            return "taken"  # another procurement got it first
        record = attempts_.attempt_record(candidate.offer_id, offer, at=now)
        fresh.attempts = [*(fresh.attempts or []), record]
        add_cluster_nodes(session, fresh, offer, uuid.UUID(candidate.offer_id), now)
        fresh.next_attempt_at = now
        note_event(
            session, fresh, "attempt",
            f"placing {offer.node_count} nodes on {offer.vendor} offer {offer.vendor_offer_id} at ${offer.gpu_price_per_hour:.2f}/GPU-h",
            now=now, data=record,
        )
        return "placed"

    return merge


async def _end_unplaced(ctx: EngineContext, lease: leases.Lease, reason: str) -> None:
    """No placement left: nothing is on the vendor (every earlier node is final), so fail at once."""
    now = ctx.now()

    async def merge(session: AsyncSession, cluster: Resource) -> None:
        if cluster.status == S.PROVISIONING.value:
            change_status(session, cluster, S.PENDING, "no placement left", at=now)
        if cluster.status == S.PENDING.value:
            change_status(session, cluster, S.FAILED, reason, at=now)
            await _fail_procurement(session, cluster)
        else:
            cluster.next_attempt_at = now

    await leases.apply(ctx.db, lease, merge)


async def _later(ctx: EngineContext, lease: leases.Lease, seconds: float, message: str, *, count: bool = False) -> None:
    when = ctx.after(seconds)

    async def merge(session: AsyncSession, cluster: Resource) -> None:
        cluster.next_attempt_at = when
        cluster.status_message = message
        if count:
            cluster.retry_count = (cluster.retry_count or 0) + 1

    await leases.apply(ctx.db, lease, merge)


# ----- the all-or-nothing rule --------------------------------------------------------------------


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


def gather(session: AsyncSession, ctx: EngineContext, cluster: Resource, nodes: list[Resource], now: datetime, *, failover: bool) -> None:
    if not nodes:
        roll_back(session, cluster, nodes, "the cluster has no nodes", now)
        return
    broken = broken_node(nodes)
    if broken is not None:
        if failover and attempts_.failed_count(cluster.attempts or []) + 1 < ctx.settings.max_failover_attempts:
            next_placement(session, cluster, nodes, broken[1], now)
        else:
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


def next_placement(session: AsyncSession, cluster: Resource, nodes: list[Resource], reason: str, now: datetime) -> None:
    """By spec: this placement failed. Delete its nodes (each confirmed); the next step picks the
    next cheapest placement once none of them is left."""
    offer_id = str(cluster.offer_id)
    cluster.attempts = attempts_.close_attempt(cluster.attempts or [], offer_id, attempts_.FAILED, reason)
    for node in nodes:
        if node.status not in _FINAL:
            hand_to_deletion(session, node, f"placement failed: {reason}; deleting its nodes before the next one", now=now, final_status=S.FAILED)
    note_event(session, cluster, "attempt", f"placement on {cluster.vendor} offer {offer_id} failed: {reason}", now=now, data={"offer_id": offer_id})
    if cluster.status == S.PROVISIONING.value:
        change_status(session, cluster, S.PENDING, f"placement failed ({reason}); trying the next cheapest", at=now)
    cluster.offer_id = None
    cluster.offer_snapshot = None
    cluster.next_attempt_at = now


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
    # All in one status: that one; mixed: the action still under way on some node.
    target = next(iter(statuses)) if len(statuses) == 1 else next((s for s in (S.STOPPING, S.STARTING, S.REBOOTING) if s in statuses), None)
    if target is not None and target in _FOLLOWED and can_transition(S(cluster.status), target):
        change_status(session, cluster, target, progress(nodes), at=now)
    cluster.status_message = progress(nodes)
    settled = len(statuses) == 1 and target in (S.RUNNING, S.STOPPED)
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
    """The cluster's status message while it comes up (the CLI's `procure --wait` shows it)."""
    running = sum(1 for n in nodes if n.status == S.RUNNING.value)
    return f"{running}/{len(nodes)} nodes running"


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
