"""Alembic migrations: up, down and up again on both databases, and in step with the models.

Synchronous tests: Alembic runs its own event loop, as `python -m app migrate` does.
"""

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
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


def test_uploaded_chunks_are_compressed_with_lz4_on_postgresql(
    postgres: PostgresCluster | None,
) -> None:
    if postgres is None:
        pytest.skip("PostgreSQL server binaries not installed")
    url = postgres.create_database(f"migrations_{next(_counter)}")
    migrations.upgrade(url)

    method = asyncio.run(
        _scalar(
            url,
            "SELECT attcompression::text FROM pg_attribute"
            " WHERE attrelid = 'upload_chunks'::regclass AND attname = 'data'",
        )
    )

    assert method == "l"


async def _scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text(sql))
    finally:
        await engine.dispose()


def test_the_upgrade_moves_uploaded_files_into_the_database_and_fails_what_it_cannot_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files kept under DATA_DIR/uploads before uploads lived in the database: each is
    copied in; an unfinished import whose file is gone fails with the reason; and on
    SQLite, rebuilding the uploads table deletes nothing that references it."""
    url = f"sqlite+aiosqlite:///{tmp_path}/upgrade.db"
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    migrations.upgrade(url, "3c9e5b7a1d42")  # the revision before
    kept, lost = uuid.uuid4(), uuid.uuid4()
    content = b"email,name\n" + b"ada@example.com,Ada\n" * 120_000  # two chunks and some
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / f"{kept}.csv").write_bytes(content)
    with sqlite3.connect(tmp_path / "upgrade.db") as database:
        for upload_id in (kept, lost):
            database.execute(
                "INSERT INTO uploads (id, filename, stored_name, size_bytes, sha256, "
                "send_welcome, created_at, status, attempts, next_offset, next_line, rows_total, "
                "rows_imported, rows_duplicate, rows_rejected) VALUES (?, 'p.csv', ?, 1, '', 1, "
                "'2026-11-27 00:00:00.000000', 'pending', 0, 0, 1, 0, 0, 0, 0)",
                (upload_id.hex, f"{upload_id}.csv"),
            )
        database.execute(
            "INSERT INTO upload_row_errors VALUES (?, 2, 'bad', 'Bad', 'not an address')",
            (kept.hex,),
        )

    migrations.upgrade(url)

    with sqlite3.connect(tmp_path / "upgrade.db") as database:
        chunks = database.execute(
            "SELECT data FROM upload_chunks WHERE upload_id = ? ORDER BY start", (kept.hex,)
        ).fetchall()
        statuses = dict(database.execute("SELECT id, status FROM uploads").fetchall())
        [(errors,)] = database.execute("SELECT count(*) FROM upload_row_errors").fetchall()
        [reason] = database.execute(
            "SELECT last_error FROM uploads WHERE id = ?", (lost.hex,)
        ).fetchone()
    assert b"".join(data for (data,) in chunks) == content
    assert len(chunks) == 3
    assert statuses == {kept.hex: "pending", lost.hex: "failed"}
    assert "upload it again" in reason
    assert errors == 1  # rebuilding `uploads` cascades into nothing
