"""SQL for audit entries."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.audit import AuditEntry
from app.repositories.dialect import upsert_insert
from app.repositories.pagination import Key, Page, paginate
from app.schemas.audit import AuditEntryCreate


async def add_many(connection: AsyncConnection, entries: Sequence[AuditEntryCreate]) -> None:
    """Insert the entries, in one statement; an entry written before (its id) is skipped."""
    await connection.execute(
        _insert(connection.dialect.name), [entry.model_dump() for entry in entries]
    )


@cache
def _insert(dialect: str) -> Any:
    return upsert_insert(dialect, AuditEntry).on_conflict_do_nothing(index_elements=[AuditEntry.id])


@dataclass(frozen=True)
class AuditFilters:
    """Entries matching every filter given; `since` is inclusive, `until` exclusive."""

    action: str | None = None
    resource: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


# Newest first; each filter has an index on (its column, occurred_at, id).
ORDER: Key = (AuditEntry.occurred_at, AuditEntry.id)


def search_statement(filters: AuditFilters) -> Select[AuditEntry]:
    statement = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, filters.action),
        (AuditEntry.resource, filters.resource),
        (AuditEntry.actor, filters.actor),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if filters.since is not None:
        statement = statement.where(AuditEntry.occurred_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(AuditEntry.occurred_at < filters.until)
    return statement


async def search(
    session: AsyncSession, filters: AuditFilters, *, cursor: str | None, limit: int
) -> Page[AuditEntry]:
    """A page of the entries matching `filters`, newest first."""
    return await paginate(session, search_statement(filters), key=ORDER, cursor=cursor, limit=limit)
