"""Liveness and readiness (no authentication): for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gpusupply.api.deps import ApiRoute, ServiceContext, service_context
from gpusupply.contract import schemas
from gpusupply.db.session import Database

router = APIRouter(route_class=ApiRoute, tags=["Health"])


@router.get("/healthz", response_model=schemas.Health, summary="The process is up")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


async def schema_revision(db: Database) -> str | None:
    """The Alembic revision the database is at (raises when the database cannot be reached)."""
    async with db.session() as session:
        try:
            return (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
        except SQLAlchemyError:
            await session.rollback()
            # A reachable database without the version table has never been migrated.
            await session.execute(text("SELECT 1"))
            return None


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    summary="The database is reachable and its schema is at the expected revision",
    responses={503: {"model": schemas.Readiness, "description": "Database unreachable or schema not at head"}},
)
async def readyz(ctx: ServiceContext = Depends(service_context)) -> JSONResponse | schemas.Readiness:
    try:
        revision = await schema_revision(ctx.db)
        database = "ok"
    except (SQLAlchemyError, OSError) as exc:
        revision, database = None, f"unreachable: {type(exc).__name__}"
    ready = database == "ok" and revision == ctx.migration_head
    answer = schemas.Readiness(
        status="ready" if ready else "not_ready", database=database, migration=revision, migration_head=ctx.migration_head
    )
    if not ready:
        return JSONResponse(answer.model_dump(mode="json"), status_code=503)
    return answer
