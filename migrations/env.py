"""Alembic environment: async engine, the service's settings and metadata."""

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.db import ensure_sqlite_directory, make_sqlite_safe_for_concurrency
from app.models import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    # `python -m app migrate` and the tests pass the URL in; plain `alembic`
    # commands fall back to the environment, like the service itself.
    url = config.attributes.get("database_url")
    return url if isinstance(url, str) else Settings().resolved_database_url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite runs DDL inside transactions once BEGIN is ours (see app.core.db):
        # a failed migration then leaves nothing half-applied.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _no_cascades_while_migrating(dbapi_connection: Any, _record: Any) -> None:
    """SQLite's batch mode rebuilds a table by copying it and dropping the old one; with
    foreign keys on, the drop would cascade into every table that references it (an
    upload's chunks and rejected rows). Off, before any transaction begins, where the
    pragma takes effect."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


async def run_async_migrations() -> None:
    url = database_url()
    engine = create_async_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        ensure_sqlite_directory(url)
        make_sqlite_safe_for_concurrency(engine)
        event.listen(engine.sync_engine, "connect", _no_cascades_while_migrating)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
