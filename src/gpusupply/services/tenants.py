"""Tenants: who owns procurements, resources and API keys. A tenant sees only its own."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import UnprocessableError
from gpusupply.db.models import Tenant
from gpusupply.db.session import Database

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")


def check_tenant_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UnprocessableError(
            "tenant name must be 1-100 characters: letters, digits and _ . @ -, starting with a letter or digit",
            loc=("tenant",),
        )
    return name


async def find_tenant(session: AsyncSession, name: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none()


async def get_or_create_tenant(db: Database, name: str) -> Tenant:
    """The tenant called `name`, created if missing (safe when two processes race)."""
    check_tenant_name(name)
    async with db.session() as session:
        tenant = await find_tenant(session, name)
        if tenant is not None:
            return tenant
    try:
        async with db.transaction() as session:
            tenant = Tenant(name=name)
            session.add(tenant)
        return tenant
    except IntegrityError:  # created meanwhile by someone else
        async with db.session() as session:
            tenant = await find_tenant(session, name)
        assert tenant is not None
        return tenant


async def list_tenants(db: Database) -> list[Tenant]:
    async with db.session() as session:
        return list((await session.execute(select(Tenant).order_by(Tenant.name))).scalars())
