"""Recovery's due-work queries and the overview's counts are served by the partial indexes
(EXPLAIN on PostgreSQL), so their cost does not grow with the rows settled and done."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.models.base import TaskStatus
from app.models.notification import NOTIFICATION_STATES, Channel
from app.models.task_state import TaskState
from app.models.upload import CSV_IMPORT_STATE
from app.models.user import WELCOME_EMAIL_STATE
from app.repositories import tasks as tasks_repo
from app.repositories.tasks import due_statement
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster


def due_work_plan(cluster: PostgresCluster, postgres_url: str, state: TaskState) -> str:
    """PostgreSQL's plan for recovery's due-work query over `state`."""
    now = datetime.now(UTC)
    statement = due_statement(state, now=now, due_before=now - timedelta(seconds=10), limit=500)
    sql = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return cluster.psql(f"EXPLAIN {sql}", database=postgres_url.rsplit("/", 1)[1])


@pytest.fixture
def many_settled_users(postgres: PostgresCluster | None, postgres_url: str) -> PostgresCluster:
    """50,000 users whose emails went out, and a handful still owed one."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    postgres.psql(
        """
        INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                           welcome_attempts, welcome_next_attempt_at, welcome_lease_until,
                           welcome_succeeded_at)
        SELECT gen_random_uuid(), 'u' || n || '@example.com', 'U', now(),
               CASE WHEN n % 10000 = 0 THEN 'pending'
                    WHEN n % 10000 = 1 THEN 'running' ELSE 'succeeded' END,
               1, 1,
               CASE WHEN n % 10000 = 0 THEN now() END,
               CASE WHEN n % 10000 = 1 THEN now() END,
               CASE WHEN n % 10000 > 1 THEN now() END
        FROM generate_series(1, 50000) AS n;
        ANALYZE users;
        """,
        database=database,
    )
    return postgres


def test_due_work_is_found_through_the_partial_indexes(
    many_settled_users: PostgresCluster, postgres_url: str
) -> None:
    plan = due_work_plan(many_settled_users, postgres_url, WELCOME_EMAIL_STATE)

    assert "ix_users_welcome_due" in plan
    assert "ix_users_welcome_lease" in plan
    assert "Seq Scan" not in plan


def test_the_overviews_exact_counts_are_read_through_the_partial_indexes(
    many_settled_users: PostgresCluster, postgres_url: str
) -> None:
    sql = tasks_repo._attention_counts(WELCOME_EMAIL_STATE).compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    plan = many_settled_users.psql(f"EXPLAIN {sql}", database=postgres_url.rsplit("/", 1)[1])

    assert "ix_users_welcome_due" in plan
    assert "ix_users_welcome_lease" in plan
    assert "ix_users_welcome_failed" in plan
    assert "Seq Scan" not in plan


async def test_many_succeeded_rows_are_estimated_and_labelled_so_the_rest_counted_exactly(
    many_settled_users: PostgresCluster, postgres_url: str
) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with AsyncSession(engine) as session:
            counts = await tasks_repo.count_by_status(session, WELCOME_EMAIL_STATE)
            succeeded, estimated = await tasks_repo.count_succeeded(session, WELCOME_EMAIL_STATE)
    finally:
        await engine.dispose()

    assert counts[TaskStatus.PENDING] == 5
    assert counts[TaskStatus.RUNNING] == 5
    assert estimated
    # ANALYZE samples the table: close to the 49,990 there are, not exact.
    assert abs(succeeded - 49_990) <= 2_500


@pytest.fixture
def many_delivered_notifications(
    postgres: PostgresCluster | None, postgres_url: str
) -> PostgresCluster:
    """50,000 notifications on both channels, all but a handful delivered."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    postgres.psql(
        """
        INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                           welcome_attempts)
        VALUES ('00000000-0000-4000-8000-000000000001', 'u@example.com', 'U', now(),
                'succeeded', 1, 1);
        INSERT INTO notifications (id, user_id, channel, subject, body, created_at, status,
                                   attempts, next_attempt_at, lease_until, succeeded_at)
        SELECT gen_random_uuid(), '00000000-0000-4000-8000-000000000001',
               CASE WHEN n % 2 = 0 THEN 'email' ELSE 'webhook' END, 's', 'b', now(),
               CASE WHEN n % 10000 < 2 THEN 'pending'
                    WHEN n % 10000 < 4 THEN 'running' ELSE 'succeeded' END,
               1,
               CASE WHEN n % 10000 < 2 THEN now() END,
               CASE WHEN n % 10000 BETWEEN 2 AND 3 THEN now() END,
               CASE WHEN n % 10000 >= 4 THEN now() END
        FROM generate_series(1, 50000) AS n;
        ANALYZE notifications;
        """,
        database=postgres_url.rsplit("/", 1)[1],
    )
    return postgres


@pytest.mark.parametrize("channel", list(Channel))
def test_each_channels_due_notifications_are_found_through_the_partial_indexes(
    many_delivered_notifications: PostgresCluster, postgres_url: str, channel: Channel
) -> None:
    plan = due_work_plan(many_delivered_notifications, postgres_url, NOTIFICATION_STATES[channel])

    assert "ix_notifications_due" in plan
    assert "ix_notifications_lease" in plan
    assert "Seq Scan" not in plan


@pytest.fixture
def many_finished_uploads(postgres: PostgresCluster | None, postgres_url: str) -> PostgresCluster:
    """50,000 uploads, all imported but a handful."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    postgres.psql(
        """
        INSERT INTO uploads (id, filename, size_bytes, sha256, send_welcome,
                             created_at, status, attempts, next_attempt_at, lease_until,
                             succeeded_at, next_offset, next_line, rows_total, rows_imported,
                             rows_duplicate, rows_rejected)
        SELECT gen_random_uuid(), 'people.csv', 10, repeat('0', 64), true,
               now(),
               CASE WHEN n % 10000 = 0 THEN 'pending'
                    WHEN n % 10000 = 1 THEN 'running' ELSE 'succeeded' END,
               1,
               CASE WHEN n % 10000 = 0 THEN now() END,
               CASE WHEN n % 10000 = 1 THEN now() END,
               CASE WHEN n % 10000 > 1 THEN now() END,
               0, 1, 0, 0, 0, 0
        FROM generate_series(1, 50000) AS n;
        ANALYZE uploads;
        """,
        database=postgres_url.rsplit("/", 1)[1],
    )
    return postgres


def test_due_uploads_are_found_through_the_partial_indexes(
    many_finished_uploads: PostgresCluster, postgres_url: str
) -> None:
    plan = due_work_plan(many_finished_uploads, postgres_url, CSV_IMPORT_STATE)

    assert "ix_uploads_due" in plan
    assert "ix_uploads_lease" in plan
    assert "Seq Scan" not in plan
