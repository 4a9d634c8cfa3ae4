"""Contract rule 2: tasks get ids and open their own sessions, from a pool of their own.

PostgreSQL only: the embedded SQLite default shares one connection by design
(see app.core.db.Database.open), and its writers take turns.
"""

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.tasks.runtime import current
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster


@pytest.fixture
def database_url(postgres: PostgresCluster | None, postgres_url: str) -> str:
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    return postgres_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database_pool_size": 2, "task_database_pool_size": 2}


async def test_background_work_holding_its_whole_pool_leaves_requests_answering(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    signup = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    engine = current().engine  # what every task's sessions come from

    async with contextlib.AsyncExitStack() as busy:
        # Slow background work, as the pool sees it: every connection taken.
        for _ in range(engine.pool.size()):  # type: ignore[attr-defined]
            await busy.enter_async_context(engine.connect())
        response = await asyncio.wait_for(client.get(signup.headers["location"]), timeout=5)

    assert response.status_code == 200
