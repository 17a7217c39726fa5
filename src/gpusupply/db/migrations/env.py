"""Alembic environment: runs on the connection handed over by db/session.py (`Database.migrate`),
or, from the alembic command line, on GPUSUPPLY_DATABASE_URL converted to a sync driver."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gpusupply.db.models import Base

target_metadata = Base.metadata


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from gpusupply.settings import get_settings

    engine = create_engine(_sync_url(get_settings().effective_database_url))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
