"""Adding users in bulk on PostgreSQL: COPY straight in, or, when a batch meets a registered
address, COPY aside and an INSERT that skips it."""

import asyncio
import csv
import io
import uuid
from datetime import datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select, text

from app.models import User
from app.models.base import TaskStatus, utcnow
from app.repositories import bulk_users
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster
from tests.support.waiting import eventually_async


@pytest.fixture
def database_url(postgres: PostgresCluster | None, postgres_url: str) -> str:
    """PostgreSQL only: COPY and the race below are PostgreSQL's."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    return postgres_url


def postgresql_rows(welcome: bool, now: datetime) -> bulk_users.RowFormat:
    return bulk_users.RowFormat(dialect="postgresql", send_welcome=welcome, now=now)


async def names_by_email(app: FastAPI) -> dict[str, str]:
    async with app.state.database.request_sessions() as session:
        rows = await session.execute(select(User.email, User.name))
        return {row.email: row.name for row in rows}


async def test_registered_addresses_are_skipped_and_new_ones_added(
    app: FastAPI,
) -> None:
    engine = app.state.database.task_engine
    now = utcnow()
    async with engine.begin() as connection:
        form = postgresql_rows(welcome=True, now=now)
        first = await bulk_users.insert_new(
            connection, form.encode([("ada@example.com", "Lovelace, Ada")]), form
        )
    async with engine.begin() as connection:
        form = postgresql_rows(welcome=False, now=now)
        second = await bulk_users.insert_new(
            connection, form.encode([("bob@example.com", "Bob"), ("ada@example.com", "Ada")]), form
        )

    assert (first, second) == (1, 1)
    assert await names_by_email(app) == {
        "ada@example.com": "Lovelace, Ada",
        "bob@example.com": "Bob",
    }
    async with app.state.database.request_sessions() as session:
        rows = await session.execute(select(User.email, User.welcome_status))
        states = {row.email: row.welcome_status for row in rows}
    assert states == {"ada@example.com": TaskStatus.PENDING, "bob@example.com": None}


async def test_a_signup_racing_the_import_of_its_address_is_skipped_not_an_error(
    app: FastAPI,
) -> None:
    engine = app.state.database.task_engine
    now = utcnow()
    async with engine.connect() as signup:
        # A signup for an address the batch holds, committed while the batch's INSERT runs.
        await signup.execute(
            insert(User).values(
                id=uuid.uuid4(), email="race@example.com", name="Signed up", created_at=now,
                welcome_status=TaskStatus.PENDING, welcome_generation=1, welcome_attempts=0,
            )
        )  # fmt: skip

        async def import_batch() -> int:
            form = postgresql_rows(welcome=False, now=now)
            rows = [
                ("ada@example.com", "Ada"),
                ("race@example.com", "Race"),
                ("bob@example.com", "Bob"),
            ]
            async with engine.begin() as connection:
                return await bulk_users.insert_new(connection, form.encode(rows), form)

        importing = asyncio.create_task(import_batch())

        async def import_waits_for_the_signup() -> bool:
            async with engine.connect() as probe:
                waiting = await probe.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                )
            return bool(waiting)

        await eventually_async(import_waits_for_the_signup, what="the INSERT to meet the signup")
        await signup.commit()
        imported = await asyncio.wait_for(importing, 10)

    assert imported == 2
    assert await names_by_email(app) == {
        "ada@example.com": "Ada",
        "bob@example.com": "Bob",
        "race@example.com": "Signed up",
    }


async def test_a_batch_of_new_addresses_goes_straight_into_users_with_ids_and_welcome_state(
    app: FastAPI,
) -> None:
    engine = app.state.database.task_engine
    now = utcnow()
    form = postgresql_rows(welcome=True, now=now)
    rows = [("ada@example.com", 'Ada "the" Countess, of Lovelace'), ("zoë@example.com", "Zoë")]
    async with engine.begin() as connection:
        added = await bulk_users.insert_new(connection, form.encode(rows), form)

    assert added == 2
    async with app.state.database.request_sessions() as session:
        users = (await session.scalars(select(User).order_by(User.email))).all()
    assert [(user.email, user.name) for user in users] == rows
    assert len({user.id for user in users}) == 2
    for user in users:
        assert (user.id.version, user.id.variant) == (4, uuid.RFC_4122)
        assert (user.created_at, user.welcome_next_attempt_at) == (now, now)
        assert (user.welcome_status, user.welcome_generation) == (TaskStatus.PENDING, 1)
        assert user.welcome_attempts == 0


def test_other_databases_get_the_rows_as_csv_with_a_new_uuid_4_each() -> None:
    form = bulk_users.RowFormat(dialect="sqlite", send_welcome=False, now=utcnow())
    rows = [("ada@example.com", 'Ada "the" Countess, of Lovelace'), ("zoë@example.com", "Zoë")]

    read_back = list(csv.reader(io.StringIO(form.encode(rows).decode())))

    assert [(email, name) for _id, email, name in read_back] == rows
    ids = [uuid.UUID(row_id) for row_id, _email, _name in read_back]
    assert [(row_id.version, row_id.variant) for row_id in ids] == [(4, uuid.RFC_4122)] * 2
    assert ids[0] != ids[1]
