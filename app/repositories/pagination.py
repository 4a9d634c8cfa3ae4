"""Keyset pagination, written once: every list is newest first by (a time, an id).

A page is the rows after a position (the time and id of the last row the
previous page showed), fetched with one more row than asked for, which says
whether another page follows: WHERE (time, id) < (:time, :id) ORDER BY time
DESC, id DESC LIMIT :limit + 1. Each list's index on (time, id) serves it.

The position travels as an opaque cursor: seven bytes of microseconds since
1970 (enough until the year 4253) and the sixteen bytes of the id, in URL-safe
base64: 31 characters. Clients pass `next_cursor` back unchanged. The schema
states the shape (app.schemas.query.CURSOR_PATTERN), and every string of that
shape is some position, so a cursor that passed validation always decodes.
"""

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import SQLColumnExpression

T = TypeVar("T")
# The columns a list is ordered by, newest first: a time, then an id to break ties.
Key = tuple[SQLColumnExpression[datetime], SQLColumnExpression[uuid.UUID]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_BYTES = 7


def encode(moment: datetime, row_id: uuid.UUID) -> str:
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(_TIME_BYTES, "big") + row_id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position of a cursor of CURSOR_PATTERN's shape (which validation has checked)."""
    raw = base64.urlsafe_b64decode(cursor + "=")
    micros = int.from_bytes(raw[:_TIME_BYTES], "big")
    return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[_TIME_BYTES:])


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this is the last page


async def paginate(
    executor: AsyncConnection | AsyncSession,
    statement: Select[Any],
    *,
    key: Key,
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """One page of `statement`'s rows after `cursor`, newest first by `key`.

    A statement selecting one model gives its objects; one selecting columns,
    their rows as mappings.
    """
    statement = page_statement(statement, key=key, cursor=cursor, limit=limit)
    result = await executor.execute(statement)
    rows = list(result.scalars() if _selects_a_model(statement) else result.mappings())
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items, encode(*_position(items[-1], key)) if more else None)


def page_statement(statement: Select[T], *, key: Key, cursor: str | None, limit: int) -> Select[T]:
    """`statement` narrowed to one page: after `cursor`, newest first, one row more than
    `limit` (which says whether another page follows)."""
    moment, row_id = key
    if cursor is not None:
        statement = statement.where(tuple_(moment, row_id) < tuple_(*decode(cursor)))
    return statement.order_by(moment.desc(), row_id.desc()).limit(limit + 1)


def _selects_a_model(statement: Select[Any]) -> bool:
    [first, *others] = statement.column_descriptions
    return not others and first["expr"] is first["entity"]


def _position(row: Any, key: Key) -> tuple[datetime, uuid.UUID]:
    """Where `row` stands in the order: its values of the key's columns."""
    names = [str(getattr(column, "key")) for column in key]  # noqa: B009 - not every kind types it
    if isinstance(row, RowMapping):
        return row[names[0]], row[names[1]]
    return getattr(row, names[0]), getattr(row, names[1])
