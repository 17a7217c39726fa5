"""Job leases: the one lease every background job takes on its `job_leases` row, so that at most
one process runs a job at a time, at most once per interval, and a job a dead process held is
taken over once its lease expires.

The engine's periodic jobs (engine/jobs.py: reconcilers, guardrails, the catalog refresh) take
them through `PeriodicJob`; the offer catalog (domain/catalog.py) takes the same lease when a
search must read a vendor on demand in a process that runs no engine.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from gpusupply.db.models import JobLease
from gpusupply.db.session import Database, rows_matched
from gpusupply.metrics import LEASE_TAKEOVERS

log = logging.getLogger(__name__)


def process_owner() -> str:
    """host:pid:random: names the process holding a lease (and a restarted process is a new owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def claim_job(db: Database, name: str, *, owner: str, lease: timedelta, interval: timedelta, now: datetime) -> uuid.UUID | None:
    """Take the job's lease if it is free and the job is due; returns the token or None."""
    async with db.session() as session:
        existing = await session.get(JobLease, name)
    if existing is None:
        try:
            async with db.transaction() as session:
                session.add(JobLease(name=name))
        except IntegrityError:  # another process inserted it first: fine
            log.debug("job lease row already created", extra={"job": name})
    token = uuid.uuid4()
    conditions = [
        JobLease.name == name,
        or_(JobLease.lock_expires_at.is_(None), JobLease.lock_expires_at < now),
        or_(JobLease.last_run_at.is_(None), JobLease.last_run_at <= now - interval),
    ]

    async def _take() -> uuid.UUID | None:
        async with db.transaction() as session:
            previous = (await session.execute(select(JobLease.lock_token).where(and_(*conditions)))).first()
            if previous is None:
                return None
            result = await session.execute(
                update(JobLease).where(*conditions).values(lock_token=token, lock_owner=owner[:100], lock_expires_at=now + lease)
            )
            if rows_matched(result) != 1:
                return None
        if previous[0] is not None:
            LEASE_TAKEOVERS.labels(name.split(":", 1)[0]).inc()
        return token

    if db.is_sqlite:
        async with db.claim_lock:
            return await _take()
    return await _take()


async def heartbeat_job(db: Database, name: str, token: uuid.UUID, *, lease: timedelta, now: datetime) -> bool:
    async with db.transaction() as session:
        result = await session.execute(
            update(JobLease).where(JobLease.name == name, JobLease.lock_token == token).values(lock_expires_at=now + lease)
        )
        return bool(rows_matched(result))


async def finish_job(db: Database, name: str, token: uuid.UUID, *, now: datetime, ran: bool = True) -> None:
    values: dict[str, Any] = {"lock_token": None, "lock_owner": None, "lock_expires_at": None}
    if ran:
        values["last_run_at"] = now
    async with db.transaction() as session:
        await session.execute(update(JobLease).where(JobLease.name == name, JobLease.lock_token == token).values(**values))
