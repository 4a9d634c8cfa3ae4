"""Recovery's due-work queries are served by the partial indexes (EXPLAIN on PostgreSQL)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.dialects import postgresql

from app.models.user import WELCOME_STATE
from app.repositories.tasks import due_statement
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster


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
                           welcome_sent_at)
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
    now = datetime.now(UTC)
    statement = due_statement(
        WELCOME_STATE, now=now, due_before=now - timedelta(seconds=10), limit=500
    )
    sql = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )

    plan = many_settled_users.psql(f"EXPLAIN {sql}", database=postgres_url.rsplit("/", 1)[1])

    assert "ix_users_welcome_due" in plan
    assert "ix_users_welcome_lease" in plan
    assert "Seq Scan" not in plan
