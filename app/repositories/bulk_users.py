"""SQL that adds many users at once: COPY on PostgreSQL, batched INSERTs on SQLite.

Either way, an address already registered (or seen earlier in the same
batch) is skipped by ON CONFLICT DO NOTHING, and the count of rows actually
inserted comes back, so the caller can count the rest as duplicates.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, Text, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models.base import TaskStatus
from app.models.user import User

# A per-connection scratch table that empties itself at every commit. Kept out
# of the models' metadata: it is not part of the schema Alembic manages.
_staging = Table(
    "user_import_rows",
    MetaData(),
    Column("line", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("name", Text, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
_CREATE_STAGING = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS user_import_rows "
    "(line integer NOT NULL, email text NOT NULL, name text NOT NULL) ON COMMIT DELETE ROWS"
)

Row = tuple[int, str, str]  # line, normalised email, name


def _welcome(send_welcome: bool, now: datetime) -> dict[str, Any]:
    """The welcome state an imported user starts in: owed and due now, or none owed."""
    if send_welcome:
        return {
            "welcome_status": TaskStatus.PENDING,
            "welcome_generation": 1,
            "welcome_next_attempt_at": now,
        }
    return {"welcome_status": None, "welcome_generation": 0, "welcome_next_attempt_at": None}


async def insert_new(
    connection: AsyncConnection, rows: Sequence[Row], *, send_welcome: bool, now: datetime
) -> int:
    """Insert the rows whose email is not registered yet, in line order; how many were."""
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        return await _copy_then_insert(connection, rows, send_welcome=send_welcome, now=now)
    return await _insert_many(connection, rows, send_welcome=send_welcome, now=now)


async def _copy_then_insert(
    connection: AsyncConnection, rows: Sequence[Row], *, send_welcome: bool, now: datetime
) -> int:
    """COPY into the scratch table (the fastest way in), then one INSERT ... SELECT.

    COPY itself cannot skip conflicting rows, hence the scratch table. It runs
    on the asyncpg connection underneath, inside the caller's transaction.
    """
    await connection.execute(_CREATE_STAGING)
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        _staging.name, records=rows, columns=("line", "email", "name")
    )
    welcome = _welcome(send_welcome, now)
    constants = [
        literal(now, User.created_at.type),
        literal(welcome["welcome_status"], User.welcome_status.type),
        literal(welcome["welcome_generation"]),
        literal(0),
        literal(welcome["welcome_next_attempt_at"], User.welcome_next_attempt_at.type),
    ]
    source = select(func.gen_random_uuid(), _staging.c.email, _staging.c.name, *constants).order_by(
        _staging.c.line
    )  # the first of two equal addresses is the one imported
    statement = (
        postgresql.insert(User)
        .from_select(
            [
                User.id,
                User.email,
                User.name,
                User.created_at,
                User.welcome_status,
                User.welcome_generation,
                User.welcome_attempts,
                User.welcome_next_attempt_at,
            ],
            source,
        )
        .on_conflict_do_nothing(index_elements=[User.email])
    )
    result = await connection.execute(statement)
    return int(result.rowcount)


async def _insert_many(
    connection: AsyncConnection, rows: Sequence[Row], *, send_welcome: bool, now: datetime
) -> int:
    welcome = _welcome(send_welcome, now)
    statement = sqlite.insert(User).on_conflict_do_nothing(index_elements=[User.email])
    result = await connection.execute(
        statement,
        [
            {
                "id": uuid.uuid4(),
                "email": email,
                "name": name,
                "created_at": now,
                "welcome_attempts": 0,
                **welcome,
            }
            for _line, email, name in rows
        ],
    )
    return int(result.rowcount)
