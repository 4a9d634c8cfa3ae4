"""SQL that adds many users at once: COPY on PostgreSQL, batched INSERTs on SQLite.

The rows come as CSV lines `line,email,name` (the CSV reader's output, and
what COPY reads), with distinct addresses, in file order. Either way, an
address already registered is skipped, and the count of rows actually
inserted comes back, so the caller can count the rest as duplicates.
"""

import csv
import io
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Select,
    Table,
    Text,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models.user import User
from app.repositories.dialect import upsert_insert
from app.repositories.users import no_welcome, welcome_owed

# A per-connection scratch table that empties itself at every commit. Kept out
# of the models' metadata: it is not part of the schema Alembic manages.
_staging = Table(
    "user_import_rows",
    MetaData(),
    Column("line", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("name", Text, nullable=False),
)
_CREATE_STAGING = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS user_import_rows "
    "(line integer NOT NULL, email text NOT NULL, name text NOT NULL) ON COMMIT DELETE ROWS"
)
_COLUMNS = [
    User.id,
    User.email,
    User.name,
    User.created_at,
    User.welcome_status,
    User.welcome_generation,
    User.welcome_attempts,
    User.welcome_next_attempt_at,
]


def _welcome(send_welcome: bool, now: datetime) -> dict[str, Any]:
    """The welcome state an imported user starts in: owed and due now, or none owed."""
    return welcome_owed(now) if send_welcome else no_welcome()


async def insert_new(
    connection: AsyncConnection, rows_csv: bytes, *, send_welcome: bool, now: datetime
) -> int:
    """Insert the rows whose email is new, as users owing a welcome email if `send_welcome`;
    how many were inserted."""
    if not rows_csv:
        return 0
    if connection.dialect.name == "postgresql":
        return await _copy_new(connection, rows_csv, send_welcome=send_welcome, now=now)
    return await _insert_new(connection, rows_csv, send_welcome=send_welcome, now=now)


async def _copy_new(
    connection: AsyncConnection, rows_csv: bytes, *, send_welcome: bool, now: datetime
) -> int:
    """PostgreSQL: the rows whose email is new; how many were inserted.

    COPY into a scratch table is the fastest way in, and costs this process
    nothing per row; it runs on the asyncpg connection underneath, inside the
    caller's transaction. COPY cannot skip a conflicting row, so one INSERT
    ... SELECT ... ON CONFLICT DO NOTHING moves the rows on into `users`: an
    address registered before, or by a signup racing this very statement, is
    skipped, not an error. (An anti-join instead of ON CONFLICT is 20% cheaper
    per row on paper, but its plan degrades to a scan of `users` per batch
    while an import outgrows the table's statistics.)
    """
    await connection.execute(_CREATE_STAGING)
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_to_table(  # type: ignore[union-attr]
        _staging.name,
        source=memoryview(rows_csv),  # a buffer: asyncpg would take bytes for a file name
        columns=["line", "email", "name"],
        format="csv",
    )
    result = await connection.execute(
        postgresql.insert(User)
        .from_select(_COLUMNS, _staged_rows(send_welcome, now))
        .on_conflict_do_nothing(index_elements=[User.email])
    )
    return int(result.rowcount)


def _staged_rows(send_welcome: bool, now: datetime) -> Select[Any]:
    """The scratch table's rows as users, with the columns of `_COLUMNS`.

    In line order, though the rows' addresses are distinct (the batch was
    deduplicated as it was read): should that change, the first still wins.
    """
    welcome = _welcome(send_welcome, now)
    return select(
        func.gen_random_uuid(),
        _staging.c.email,
        _staging.c.name,
        literal(now, User.created_at.type),
        literal(welcome["welcome_status"], User.welcome_status.type),
        literal(welcome["welcome_generation"]),
        literal(welcome["welcome_attempts"]),
        literal(welcome["welcome_next_attempt_at"], User.welcome_next_attempt_at.type),
    ).order_by(_staging.c.line)


async def _insert_new(
    connection: AsyncConnection, rows_csv: bytes, *, send_welcome: bool, now: datetime
) -> int:
    """Any database (used on SQLite, whose writers queue): one executemany, conflicts skipped."""
    rows = csv.reader(io.StringIO(rows_csv.decode()))
    welcome = _welcome(send_welcome, now)
    statement = upsert_insert(connection.dialect.name, User).on_conflict_do_nothing(
        index_elements=[User.email]
    )
    result = await connection.execute(
        statement,
        [
            {
                "id": uuid.uuid4(),
                "email": email,
                "name": name,
                "created_at": now,
                **welcome,
            }
            for _line, email, name in rows
        ],
    )
    return int(result.rowcount)
