"""GET /admin/audit's queries read pages through an index, in order (EXPLAIN on PostgreSQL)."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import postgresql

from app.repositories import pagination
from app.repositories.audit import ORDER, AuditFilters, search_statement
from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster


@pytest.fixture
def many_entries(postgres: PostgresCluster | None, postgres_url: str) -> PostgresCluster:
    """100,000 entries over ten actions, two actors and many resources."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    postgres.psql(
        """
        INSERT INTO audit_entries (id, occurred_at, actor, action, resource, details)
        SELECT gen_random_uuid(), now() - n * interval '1 second',
               CASE WHEN n % 50 = 0 THEN 'admin' ELSE 'anonymous' END,
               'action.' || (n % 10), 'users/' || (n % 5000), '{}'
        FROM generate_series(1, 100000) AS n;
        ANALYZE audit_entries;
        """,
        database=postgres_url.rsplit("/", 1)[1],
    )
    return postgres


def page_query(filters: dict[str, str]) -> str:
    """The SQL of a second page (after a cursor) with these filters, as the API runs it."""
    statement = pagination.page_statement(
        search_statement(
            AuditFilters(
                action=filters.get("action"),
                resource=filters.get("resource"),
                actor=filters.get("actor"),
            )
        ),
        key=ORDER,
        cursor=pagination.encode(datetime.now(UTC), uuid.UUID(int=0)),
        limit=50,
    )
    return str(
        statement.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
    )


# A selective filter (20 rows per resource) may fetch its few rows and sort them:
# cheap either way. The broad ones must read in index order and stop at the page.
@pytest.mark.parametrize(
    ("filters", "index", "may_sort"),
    [
        ({}, "ix_audit_entries_occurred_at_id", False),
        ({"action": "action.3"}, "ix_audit_entries_action_occurred_at_id", False),
        ({"actor": "admin"}, "ix_audit_entries_actor_occurred_at_id", False),
        ({"resource": "users/42"}, "ix_audit_entries_resource_occurred_at_id", True),
    ],
)
def test_each_filter_is_served_by_its_index(
    many_entries: PostgresCluster,
    postgres_url: str,
    filters: dict[str, str],
    index: str,
    may_sort: bool,
) -> None:
    plan = many_entries.psql(
        f"EXPLAIN {page_query(filters)}", database=postgres_url.rsplit("/", 1)[1]
    )

    assert index in plan
    assert "Seq Scan" not in plan
    assert may_sort or "Sort" not in plan
