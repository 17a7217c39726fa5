"""Row leases: how engine processes share work on `resources` without a leader.

- claim: in one short transaction, pick due rows whose lease is free or expired
  (`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite under the process's
  `db.claim_lock`) and write a fresh `lock_token`, `lock_owner` and `lock_expires_at` on each,
  guarded by the same conditions, so two processes can never both win a row.
- heartbeat: extend `lock_expires_at` while a step runs (vendor calls may take long).
- apply: re-read the row `WHERE lock_token = :token`, merge the step's result into what is there
  now, and write only the changed columns `WHERE id AND lock_token AND status = <status read>`.
  If the status moved meanwhile (the API deleted it), the merge runs again on the new row.
  If the token is gone, the lease was lost (it expired and someone took over): `LeaseLost`.

No vendor I/O ever happens inside these transactions. See docs/engine.md.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import inspect, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.db.models import Resource
from gpusupply.db.session import Database, rows_matched
from gpusupply.metrics import LEASE_TAKEOVERS

log = logging.getLogger(__name__)

T = TypeVar("T")
# A merge gets the fresh row (inside the apply transaction) and mutates it; it may add events.
Merge = Callable[[AsyncSession, Resource], Awaitable[T]]

APPLY_RETRIES = 8
LEASE_COLUMNS = ("lock_token", "lock_owner", "lock_expires_at")


class LeaseLost(Exception):
    """The row no longer carries our token: someone else owns the work now."""


class _StatusMoved(Exception):
    """The status changed between our read and our write; merge again."""


@dataclass(slots=True)
class Lease:
    resource_id: uuid.UUID
    token: uuid.UUID
    pipeline: str
    taken_over: bool = False  # the previous holder's lease had expired
    lost: bool = False
    vendor: str | None = None  # the row's vendor when claimed (None: not chosen yet)


def _free(now: datetime) -> Any:
    return or_(Resource.lock_expires_at.is_(None), Resource.lock_expires_at < now)


async def claim(
    db: Database,
    *,
    pipeline: str,
    owner: str,
    statuses: Iterable[str],
    limit: int,
    lease: timedelta,
    now: datetime,
    resource_id: uuid.UUID | None = None,
    due_only: bool = True,
    vendor_room: dict[str, int] | None = None,
    resource_type: str | None = "vm",
) -> list[Lease]:
    """Lease up to `limit` due rows in `statuses` (or only `resource_id`, when given).

    `vendor_room`: at most this many rows of each vendor named (0 leaves a vendor out), so that
    one vendor whose calls queue behind its rate limit cannot take every worker of a pipeline.
    Rows without a vendor yet, and vendors not named, are not limited.
    `resource_type`: only rows of that type ("vm": instances, "cluster": clusters; None: any).
    """
    if limit <= 0:
        return []
    statuses = list(statuses)
    conditions = [Resource.status.in_(statuses), _free(now)]
    if due_only:
        conditions.append(Resource.next_attempt_at <= now)
    if resource_id is not None:
        conditions.append(Resource.id == resource_id)
    if resource_type is not None:
        conditions.append(Resource.resource_type == resource_type)
    room = dict(vendor_room or {})
    full = [vendor for vendor, n in room.items() if n <= 0]
    if full:
        conditions.append(or_(Resource.vendor.is_(None), Resource.vendor.notin_(full)))
    if db.is_sqlite:
        async with db.claim_lock:
            return await _claim(db, pipeline, owner, conditions, limit, lease, now, room)
    return await _claim(db, pipeline, owner, conditions, limit, lease, now, room)


async def _claim(
    db: Database, pipeline: str, owner: str, conditions: list[Any], limit: int, lease: timedelta, now: datetime, room: dict[str, int]
) -> list[Lease]:
    query = select(Resource.id, Resource.lock_token, Resource.vendor).where(*conditions).order_by(Resource.next_attempt_at).limit(limit)
    if not db.is_sqlite:
        query = query.with_for_update(skip_locked=True, key_share=True)
    leases: list[Lease] = []
    async with db.transaction() as session:
        rows = (await session.execute(query)).all()
        for row_id, old_token, vendor in rows:
            if vendor in room:
                if room[vendor] <= 0:
                    continue  # this vendor's share is taken: its later rows wait for the next claim
                room[vendor] -= 1
            token = uuid.uuid4()
            # Guarded again: on SQLite another process may have claimed the row since our select.
            result = await session.execute(
                update(Resource)
                .where(Resource.id == row_id, *conditions)
                .values(lock_token=token, lock_owner=f"{owner}/{pipeline}"[:100], lock_expires_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if rows_matched(result) == 1:
                leases.append(Lease(row_id, token, pipeline, taken_over=old_token is not None, vendor=vendor))
    for item in leases:
        if item.taken_over:
            LEASE_TAKEOVERS.labels(pipeline).inc()
            log.info("lease taken over", extra={"pipeline": pipeline, "resource_id": str(item.resource_id)})
    return leases


async def load(db: Database, lease: Lease) -> Resource | None:
    """The row as it is now, if we still hold it (a detached snapshot: read it, do not write it)."""
    async with db.session() as session:
        row = (
            await session.execute(select(Resource).where(Resource.id == lease.resource_id, Resource.lock_token == lease.token))
        ).scalar_one_or_none()
        if row is not None:
            session.expunge(row)
        return row


async def heartbeat(db: Database, leases: Iterable[Lease], *, lease: timedelta, now: datetime) -> None:
    """Extend every lease we hold; mark the ones that are gone as lost."""
    items = [item for item in leases if not item.lost]
    if not items:
        return
    async with db.transaction() as session:
        for item in items:
            result = await session.execute(
                update(Resource)
                .where(Resource.id == item.resource_id, Resource.lock_token == item.token)
                .values(lock_expires_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            if rows_matched(result) == 0:
                item.lost = True


async def release(db: Database, leases: Iterable[Lease]) -> None:
    """Give leases back without other changes (shutdown, or a step that dropped its work)."""
    items = list(leases)
    if not items:
        return
    async with db.transaction() as session:
        for item in items:
            await session.execute(
                update(Resource)
                .where(Resource.id == item.resource_id, Resource.lock_token == item.token)
                .values(lock_token=None, lock_owner=None, lock_expires_at=None)
                .execution_options(synchronize_session=False)
            )


def _changed_columns(row: Resource) -> dict[str, Any]:
    state = inspect(row)
    changes: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        if state.attrs[attr.key].history.has_changes():
            changes[attr.key] = getattr(row, attr.key)
    return changes


async def apply(db: Database, lease: Lease, merge: Merge[T], *, release_lease: bool = True) -> T:
    """Merge a step's result into the row we lease and write it; returns what `merge` returned.

    `merge` may run more than once (when the status moved between read and write), so it must
    only touch the row and the session, never counters or the outside world.
    """
    for _ in range(APPLY_RETRIES):
        try:
            async with db.transaction() as session:
                query = select(Resource).where(Resource.id == lease.resource_id, Resource.lock_token == lease.token)
                if not db.is_sqlite:
                    query = query.with_for_update(key_share=True)
                row = (await session.execute(query)).scalar_one_or_none()
                if row is None:
                    lease.lost = True
                    raise LeaseLost(f"resource {lease.resource_id}: lease lost")
                status_read = row.status
                value = await merge(session, row)
                changes = _changed_columns(row)
                if release_lease:
                    changes.update(lock_token=None, lock_owner=None, lock_expires_at=None)
                session.expunge(row)  # written below by one guarded UPDATE, never by the ORM flush
                if changes:
                    result = await session.execute(
                        update(Resource)
                        .where(Resource.id == lease.resource_id, Resource.lock_token == lease.token, Resource.status == status_read)
                        .values(**changes)
                        .execution_options(synchronize_session=False)
                    )
                    if rows_matched(result) == 0:
                        raise _StatusMoved()
                return value
        except _StatusMoved:
            log.info("status moved during apply; merging again", extra={"resource_id": str(lease.resource_id)})
            continue
    raise LeaseLost(f"resource {lease.resource_id}: could not apply after {APPLY_RETRIES} tries")
