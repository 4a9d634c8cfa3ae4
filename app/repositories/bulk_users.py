"""SQL that adds many users at once: COPY on PostgreSQL, batched INSERTs on SQLite.

A batch arrives as bytes its `RowFormat` wrote in the CSV worker: on
PostgreSQL, the binary form COPY reads (a new id each, then what every row of
the batch shares), which this process passes on without touching a row; on
other databases, CSV lines `id,email,name`. The addresses are distinct.
Either way, an address already registered is skipped, and the count of rows
actually inserted comes back, so the caller can count the rest as duplicates.
"""

import csv
import io
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


@dataclass(frozen=True)
class RowFormat:
    """How one batch of new users is written down for `insert_new`, and what they share:
    their welcome state and `created_at`. Small and plain, so it crosses into the CSV
    worker, which does the encoding (the CPU is the worker's, not the event loop's)."""

    dialect: str
    send_welcome: bool
    now: datetime

    def encode(self, rows: Sequence[tuple[str, str]]) -> bytes:
        """(email, name) pairs, each given a new random id."""
        if self.dialect == "postgresql":
            return _copy_binary(rows, self._binary_tail())
        return _csv_lines(rows)

    def _binary_tail(self) -> bytes:
        """The columns after id, email and name, as binary COPY fields."""
        shared = {"created_at": self.now, **_welcome(self.send_welcome, self.now)}
        return b"".join(_binary_field(shared[column]) for column in _COPY_COLUMNS[3:])


# PostgreSQL's binary COPY: a signature and two empty words, then per row its
# field count and each field as a length (-1: NULL) and bytes, then -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack(">h", -1)
_ROW_START = struct.Struct(">hi16si")  # field count, the id (length, bytes), the email's length
_LENGTH = struct.Struct(">i")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _binary_field(value: str | int | datetime | None) -> bytes:
    if value is None:
        return _LENGTH.pack(-1)
    if isinstance(value, datetime):  # timestamptz: microseconds since PostgreSQL's epoch
        return struct.pack(">iq", 8, (value - _PG_EPOCH) // _ONE_MICROSECOND)
    if isinstance(value, int):  # integer (int4)
        return struct.pack(">ii", 4, value)
    data = value.encode()  # text, varchar, and a TaskStatus (a str)
    return _LENGTH.pack(len(data)) + data


def _copy_binary(rows: Sequence[tuple[str, str]], tail: bytes) -> bytes:
    ids = _new_ids(len(rows))
    fields = len(_COPY_COLUMNS)
    parts = [_COPY_HEADER]
    for at, (email, name) in enumerate(rows):
        email_bytes, name_bytes = email.encode(), name.encode()
        parts += (
            _ROW_START.pack(fields, 16, ids[16 * at : 16 * at + 16], len(email_bytes)),
            email_bytes,
            _LENGTH.pack(len(name_bytes)),
            name_bytes,
            tail,
        )
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _csv_lines(rows: Sequence[tuple[str, str]]) -> bytes:
    buffer = io.StringIO()
    ids = _new_ids(len(rows)).hex()
    csv.writer(buffer, lineterminator="\n").writerows(
        (ids[32 * at : 32 * at + 32], email, name) for at, (email, name) in enumerate(rows)
    )
    return buffer.getvalue().encode()


def _new_ids(count: int) -> bytes:
    """`count` random (version 4) UUIDs, 16 bytes each: made a batch at a time, for a
    tenth of what uuid4() costs each (or gen_random_uuid() costs the database)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(byte & 0x0F | 0x40 for byte in raw[6::16])  # version 4
    raw[8::16] = bytes(byte & 0x3F | 0x80 for byte in raw[8::16])  # RFC 4122 variant
    return bytes(raw)


async def insert_new(connection: AsyncConnection, rows: bytes, form: RowFormat) -> int:
    """Insert the rows (as `form` encoded them) whose email is new; how many were inserted."""
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        return await _copy_new(connection, rows)
    return await _insert_new(connection, rows, form)


async def _copy_new(connection: AsyncConnection, rows: bytes) -> int:
    """PostgreSQL: the rows whose email is new; how many were inserted.

    COPY straight into `users` is what `psql \\copy` does, and costs this
    process nothing per row; in the binary form it costs the database less
    than CSV would (no uuid or timestamp to parse). It runs on the asyncpg
    connection underneath, inside the caller's transaction, under a savepoint.
    Most batches meet no registered address, and are done. COPY cannot skip a
    conflicting row, so a batch that meets one is rolled back to the savepoint
    and goes the longer way: COPY into a scratch table, then one INSERT ...
    SELECT ... ON CONFLICT DO NOTHING, which skips an address registered
    before, or by a signup racing this very statement. (An anti-join instead of
    ON CONFLICT is 20% cheaper per row on paper, but its plan degrades to a
    scan of `users` per batch while an import outgrows the table's statistics.)
    """
    raw = (await connection.get_raw_connection()).driver_connection
    source = memoryview(rows)  # a buffer: asyncpg would take bytes for a file name
    try:
        async with connection.begin_nested():
            status = await raw.copy_to_table(  # type: ignore[union-attr]
                "users", source=source, columns=_COPY_COLUMNS, format="binary"
            )
        return int(status.rpartition(" ")[2])  # "COPY <rows>"
    except UniqueViolationError:
        pass
    await connection.execute(_CREATE_STAGING)
    await raw.copy_to_table(  # type: ignore[union-attr]
        _STAGING, source=source, columns=_COPY_COLUMNS, format="binary"
    )
    result = await connection.execute(_MOVE_STAGED)
    return int(result.rowcount)


async def _insert_new(connection: AsyncConnection, rows: bytes, form: RowFormat) -> int:
    """Any database (used on SQLite, whose writers queue): one executemany, conflicts skipped."""
    welcome = _welcome(form.send_welcome, form.now)
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
                "created_at": form.now,
                **welcome,
            }
            for row_id, email, name in csv.reader(io.StringIO(rows.decode()))
        ],
    )
    return int(result.rowcount)
