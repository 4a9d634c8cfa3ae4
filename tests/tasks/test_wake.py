"""A pure web process wakes the workers through PostgreSQL; a woken worker passes at once."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.shutdown import Shutdown
from app.models.base import TaskStatus
from app.tasks.background import run_background_loops
from app.tasks.runtime import current
from app.tasks.wake import CHANNEL, Notifier
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster
from tests.support.rows import get_user, insert_user
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async


@pytest.fixture
def database_url(postgres: PostgresCluster | None, postgres_url: str) -> str:
    """PostgreSQL only: LISTEN/NOTIFY is PostgreSQL's."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    return postgres_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Long enough that only a notification explains a prompt pass.
    return {
        "serve_background_work": False,
        "recovery_interval_seconds": 60,
        "recovery_grace_seconds": 60,
        "prune_interval_seconds": 0,
    }


async def listening(app: FastAPI) -> tuple[Any, list[str]]:
    """A connection LISTENing on the channel, and the notifications it has received."""
    received: list[str] = []
    connection = await app.state.database.request_engine.raw_connection()
    raw = connection.driver_connection
    await raw.add_listener(CHANNEL, lambda *args: received.append(args[2]))
    return connection, received


async def notified(received: list[str]) -> None:
    async def any_yet() -> list[str]:
        return received

    await eventually_async(any_yet, what="a notification")


async def test_a_pure_web_process_sends_nothing_itself_and_wakes_the_workers(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    connection, received = await listening(app)
    try:
        response = await client.post("/signups", json={"email": "ada@example.com", "name": "A"})
        await notified(received)
    finally:
        connection.close()

    assert response.status_code == 201
    user = await get_user(app, response.json()["id"])
    assert user.welcome_status is TaskStatus.PENDING
    assert smtp.messages == []


async def test_a_burst_of_requests_shares_notifications(app: FastAPI) -> None:
    connection, received = await listening(app)
    notifier = Notifier(app.state.database.request_engine)
    try:
        await asyncio.gather(*(notifier.wake_workers() for _ in range(50)))
        await notified(received)
    finally:
        connection.close()

    assert 1 <= len(received) <= 2  # the first, and one for all that came while it was sent


async def test_a_woken_worker_sends_owed_work_at_once_without_the_grace(
    app: FastAPI, smtp: SMTPServer
) -> None:
    shutdown = Shutdown(grace_seconds=5)
    loops = asyncio.create_task(run_background_loops(current(), shutdown))
    try:
        # The loops' first passes are over; then a user is owed an email, due now.
        await asyncio.sleep(0.5)
        user_id = await insert_user(app, "ada@example.com")
        async with app.state.database.request_engine.connect() as connection:
            await connection.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
            await connection.commit()

        async def sent() -> list[Any]:
            return smtp.messages

        await eventually_async(sent, timeout=5, what="the welcome email")
    finally:
        shutdown.begin()
        await asyncio.wait_for(loops, 10)

    assert (await get_user(app, user_id)).welcome_status is TaskStatus.SUCCEEDED
