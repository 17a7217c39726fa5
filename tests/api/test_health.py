"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from gpusupply.app import migration_head


async def test_healthz(service: Any) -> None:
    response = await service.anonymous.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_when_ready(service: Any) -> None:
    response = await service.anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migration": migration_head(), "migration_head": migration_head()}


async def test_readyz_when_the_schema_is_behind(service: Any) -> None:
    async with service.db.transaction() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    response = await service.anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready" and response.json()["migration"] == "0000"


async def test_readyz_when_the_database_is_gone(service: Any) -> None:
    async with service.db.transaction() as session:
        await session.execute(text("DROP TABLE alembic_version"))
    response = await service.anonymous.get("/readyz")
    assert response.status_code == 503 and response.json()["migration"] is None
    # A database server nobody listens on: unreachable.
    from gpusupply.db.session import Database

    service.ctx.db = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        response = await service.anonymous.get("/readyz")
        assert response.status_code == 503 and response.json()["database"].startswith("unreachable")
    finally:
        await service.ctx.db.dispose()
        service.ctx.db = service.db


async def test_database_outage_is_503_not_500(service: Any) -> None:
    from gpusupply.db.session import Database

    service.ctx.db = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        for method, path in (("GET", "/resources"), ("GET", "/available_gpus"), ("POST", "/procure_offer")):
            response = await service.alice.request(method, path, json={})
            assert response.status_code == 503, (path, response.text)
            assert response.headers["Retry-After"] == "1" and "retry" in response.json()["detail"]
    finally:
        await service.ctx.db.dispose()
        service.ctx.db = service.db
