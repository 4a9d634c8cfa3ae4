"""SQL that adds many users at once: COPY on PostgreSQL, batched INSERTs on SQLite.

The rows come as CSV lines `id,email,name` followed by `row_tail(...)` (the
CSV reader's output, and what COPY reads), with distinct addresses. Either way,
an address already registered is skipped, and the count of rows actually
inserted comes back, so the caller can count the rest as duplicates.
"""

import csv
import io
import uuid
from datetime import datetime
from typing import Any

from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models.user import User
from app.repositories.dialect import upsert_insert
from app.repositories.users import no_welcome, welcome_owed

# What COPY fills in each user: its id, email and name, then the tail every row shares.
_COPY_COLUMNS = [
    "id",
    "email",
    "name",
    "created_at",
    "welcome_status",
    "welcome_generation",
    "welcome_attempts",
    "welcome_next_attempt_at",
]
# A per-connection scratch table that empties itself at every commit, for a
# batch that meets addresses already registered.
_STAGING = "user_import_rows"
_CREATE_STAGING = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
    "(id uuid NOT NULL, email text NOT NULL, name text NOT NULL, "
    "created_at timestamptz NOT NULL, "
    "welcome_status varchar(16), welcome_generation integer NOT NULL, "
    "welcome_attempts integer NOT NULL, welcome_next_attempt_at timestamptz) "
    "ON COMMIT DELETE ROWS"
)
_COLUMN_LIST = ", ".join(_COPY_COLUMNS)
_MOVE_STAGED = text(
    f"INSERT INTO users ({_COLUMN_LIST}) "  # noqa: S608 - names fixed here
    f"SELECT {_COLUMN_LIST} FROM {_STAGING} "
    "ON CONFLICT (email) DO NOTHING"
)


def _welcome(send_welcome: bool, now: datetime) -> dict[str, Any]:
    """The welcome state an imported user starts in: owed and due now, or none owed."""
    return welcome_owed(now) if send_welcome else no_welcome()


def row_tail(*, send_welcome: bool, now: datetime) -> str:
    """What follows `id,email,name` on each CSV line: the columns every user of a batch
    shares (an empty field is NULL to COPY)."""
    welcome = _welcome(send_welcome, now)
    status = welcome["welcome_status"]
    due = welcome["welcome_next_attempt_at"]
    values = [
        now.isoformat(),
        status.value if status is not None else "",
        str(welcome["welcome_generation"]),
        str(welcome["welcome_attempts"]),
        due.isoformat() if due is not None else "",
    ]
    return "," + ",".join(values)


async def insert_new(
    connection: AsyncConnection, rows_csv: bytes, *, send_welcome: bool, now: datetime
) -> int:
    """Insert the rows whose email is new (their tail made by `row_tail` with the same
    `send_welcome` and `now`); how many were inserted."""
    if not rows_csv:
        return 0
    if connection.dialect.name == "postgresql":
        return await _copy_new(connection, rows_csv)
    return await _insert_new(connection, rows_csv, send_welcome=send_welcome, now=now)


async def _copy_new(connection: AsyncConnection, rows_csv: bytes) -> int:
    """PostgreSQL: the rows whose email is new; how many were inserted.

    COPY straight into `users` is what `psql \\copy` does, and costs this
    process nothing per row; it runs on the asyncpg connection underneath,
    inside the caller's transaction, under a savepoint. Most batches meet no
    registered address, and are done. COPY cannot skip a conflicting row, so a
    batch that meets one is rolled back to the savepoint and goes the longer
    way: COPY into a scratch table, then one INSERT ... SELECT ... ON CONFLICT
    DO NOTHING, which skips an address registered before, or by a signup
    racing this very statement. (An anti-join instead of ON CONFLICT is 20%
    cheaper per row on paper, but its plan degrades to a scan of `users` per
    batch while an import outgrows the table's statistics.)
    """
    raw = (await connection.get_raw_connection()).driver_connection
    source = memoryview(rows_csv)  # a buffer: asyncpg would take bytes for a file name
    try:
        async with connection.begin_nested():
            await raw.copy_to_table(  # type: ignore[union-attr]
                "users", source=source, columns=_COPY_COLUMNS, format="csv"
            )
        return rows_csv.count(b"\n")
    except UniqueViolationError:
        pass
    await connection.execute(_CREATE_STAGING)
    await raw.copy_to_table(  # type: ignore[union-attr]
        _STAGING, source=source, columns=_COPY_COLUMNS, format="csv"
    )
    result = await connection.execute(_MOVE_STAGED)
    return int(result.rowcount)


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
                "id": uuid.UUID(row_id),
                "email": email,
                "name": name,
                "created_at": now,
                **welcome,
            }
            for row_id, email, name, *_tail in rows
        ],
    )
    return int(result.rowcount)
