"""Alembic migrations: up, down and up again on both databases, and in step with the models.

Synchronous tests: Alembic runs its own event loop, as `python -m app migrate` does.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
from app.models import Base
from tests.support.postgres import PostgresCluster

_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
        return
    cluster: PostgresCluster | None = request.getfixturevalue("postgres")
    if cluster is None:
        pytest.skip("PostgreSQL server binaries not installed")
    yield cluster.create_database(f"migrations_{next(_counter)}")


def table_names(url: str) -> set[str]:
    return asyncio.run(_table_names(url))


async def _table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names)


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def model_diff(url: str) -> list[object]:
    return asyncio.run(_model_diff(url))


async def _model_diff(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_diff)
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database: str) -> None:
    expected = set(Base.metadata.tables)

    migrations.upgrade(empty_database)
    assert expected <= table_names(empty_database)
    migrations.downgrade(empty_database, "base")
    assert table_names(empty_database) <= {"alembic_version"}
    migrations.upgrade(empty_database)

    assert expected <= table_names(empty_database)


def test_models_and_migrations_agree(empty_database: str) -> None:
    migrations.upgrade(empty_database)

    assert model_diff(empty_database) == []
