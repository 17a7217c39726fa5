"""This installation's identity: made at first start, stored in the database, read by every process.

Vendor markers carry it (vendors/base.py `marker_for`), so two installations that share a vendor
account each touch only their own instances (engine/reconciler.py)."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gpusupply.core.markers import INSTALLATION_ID_LEN
from gpusupply.db.models import Installation
from gpusupply.db.session import Database


async def installation_id(db: Database) -> str:
    """The id, made on the first call against a new database (two processes starting together agree:
    the loser of the insert reads the winner's row). Cached on the `Database` afterwards."""
    if db.installation_id is not None:
        return db.installation_id
    async with db.session() as session:
        found = (await session.execute(select(Installation.id))).scalar_one_or_none()
    if found is None:
        try:
            async with db.transaction() as session:
                session.add(Installation(singleton=1, id=secrets.token_hex(INSTALLATION_ID_LEN // 2)))
        except IntegrityError:
            pass  # another process made it first
        async with db.session() as session:
            found = (await session.execute(select(Installation.id))).scalar_one()
    db.installation_id = found
    return found
