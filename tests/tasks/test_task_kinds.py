"""One table, several task kinds: each kind claims, recovers, counts and lists only its own rows.

Notifications keep one table but are one kind per channel, so that each channel
has its own concurrency limit; TaskState.where is what keeps the kinds apart.
"""

import dataclasses
import uuid
from typing import get_args

from fastapi import FastAPI

from app.core.db import single_statement
from app.models.base import TaskStatus, utcnow
from app.models.user import WELCOME_EMAIL_STATE, User
from app.repositories import tasks as tasks_repo
from app.schemas.admin import TaskKindName
from app.tasks.registry import MUST_COMPLETE
from app.tasks.runtime import current
from tests.support.rows import ago, insert_user

# Two kinds over the users table, split by name, standing in for two channels.
ADA_ONLY = dataclasses.replace(WELCOME_EMAIL_STATE, where=(User.name == "Ada",))
BOB_ONLY = dataclasses.replace(WELCOME_EMAIL_STATE, where=(User.name == "Bob",))


def test_the_api_names_exactly_the_registered_kinds() -> None:
    assert list(get_args(TaskKindName)) == list(MUST_COMPLETE)
    assert all(name == kind.name for name, kind in MUST_COMPLETE.items())


async def two_users(app: FastAPI) -> tuple[uuid.UUID, uuid.UUID]:
    ada = await insert_user(app, "ada@example.com", "Ada", welcome_next_attempt_at=ago(60))
    bob = await insert_user(app, "bob@example.com", "Bob", welcome_next_attempt_at=ago(60))
    return ada, bob


async def test_a_kind_claims_only_its_own_rows(app: FastAPI) -> None:
    ada, bob = await two_users(app)
    now = utcnow()

    async with single_statement(current().engine) as connection:
        other = await tasks_repo.claim(connection, ADA_ONLY, [bob], now=now, lease_until=now)
        mine = await tasks_repo.claim(connection, ADA_ONLY, [ada], now=now, lease_until=now)
        many = await tasks_repo.claim(connection, BOB_ONLY, [ada, bob], now=now, lease_until=now)

    assert other == []
    assert [row["id"] for row in mine] == [ada]
    assert [row["id"] for row in many] == [bob]


async def test_a_kind_sees_only_its_own_due_rows_counts_and_dead_letters(app: FastAPI) -> None:
    ada, bob = await two_users(app)
    now = utcnow()

    async with single_statement(current().engine) as connection:
        due = await tasks_repo.due_ids(connection, ADA_ONLY, now=now, due_before=now, limit=10)
        counts = await tasks_repo.count_by_status(connection, BOB_ONLY)
        summary = await tasks_repo.due_summary(connection, BOB_ONLY, now=now)
        other_status = await tasks_repo.get_status(connection, ADA_ONLY, bob)

    assert due == [ada]
    assert counts[TaskStatus.PENDING] == 1
    assert summary[0] == 1
    assert other_status is None


async def test_a_state_without_conditions_still_covers_every_row(app: FastAPI) -> None:
    await two_users(app)

    async with single_statement(current().engine) as connection:
        counts = await tasks_repo.count_by_status(connection, WELCOME_EMAIL_STATE)

    assert counts[TaskStatus.PENDING] == 2
