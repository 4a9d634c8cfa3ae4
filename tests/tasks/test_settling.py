"""Settles written together: one statement for many rows, each still fenced by its own lease."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.core.db import single_statement
from app.models import User
from app.models.base import TaskStatus, utcnow
from app.models.user import WELCOME_EMAIL_STATE
from app.repositories import tasks as tasks_repo
from app.tasks.runtime import current
from app.tasks.settling import Settle
from tests.support.rows import get_user, insert_user


async def claimed_users(app: FastAPI, count: int) -> tuple[list[uuid.UUID], Settle]:
    """`count` users claimed by one run; and a settle's shape, for its lease."""
    ids = [await insert_user(app, f"user{n}@example.com") for n in range(count)]
    lease = utcnow() + timedelta(minutes=2)
    async with single_statement(current().engine) as connection:
        await tasks_repo.claim(
            connection, WELCOME_EMAIL_STATE, ids, now=utcnow(), lease_until=lease
        )
    return ids, Settle(ids[0], lease, TaskStatus.SUCCEEDED)


async def take_over(app: FastAPI, user_id: uuid.UUID) -> None:
    """Another run claims the row: its lease, the fencing token, moves on."""
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(welcome_lease_until=utcnow() + timedelta(minutes=5), welcome_attempts=2)
        )


async def test_settles_made_together_are_written_together_and_each_keeps_its_own_fence(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, shape = await claimed_users(app, 3)
    await take_over(app, ids[2])
    statements = 0
    real_settle = tasks_repo.settle

    async def counting_settle(*args: Any, **kwargs: Any) -> set[uuid.UUID]:
        nonlocal statements
        statements += 1
        return await real_settle(*args, **kwargs)

    monkeypatch.setattr(tasks_repo, "settle", counting_settle)
    settler = current().settlers.of(WELCOME_EMAIL_STATE)

    written = await asyncio.gather(
        *(settler.settle(Settle(row_id, shape.lease_until, TaskStatus.SUCCEEDED)) for row_id in ids)
    )

    assert statements == 1
    assert written == [True, True, False]  # the third was another run's by then
    assert [(await get_user(app, row_id)).welcome_status for row_id in ids] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.SUCCEEDED,
        TaskStatus.RUNNING,
    ]


async def test_settles_of_different_outcomes_each_set_their_own_columns(app: FastAPI) -> None:
    ids, shape = await claimed_users(app, 2)
    retry_at = utcnow() + timedelta(minutes=1)
    settler = current().settlers.of(WELCOME_EMAIL_STATE)

    written = await asyncio.gather(
        settler.settle(Settle(ids[0], shape.lease_until, TaskStatus.SUCCEEDED)),
        settler.settle(
            Settle(ids[1], shape.lease_until, TaskStatus.RETRYING, "SMTP 451 busy", retry_at)
        ),
    )

    succeeded, retrying = [await get_user(app, row_id) for row_id in ids]
    assert list(written) == [True, True]
    assert (succeeded.welcome_status, succeeded.welcome_last_error) == (TaskStatus.SUCCEEDED, None)
    assert succeeded.welcome_succeeded_at is not None
    assert (retrying.welcome_status, retrying.welcome_last_error) == (
        TaskStatus.RETRYING,
        "SMTP 451 busy",
    )
    assert retrying.welcome_next_attempt_at == retry_at
    assert retrying.welcome_succeeded_at is None
