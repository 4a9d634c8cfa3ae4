"""SQL for audit entries."""

import uuid
from datetime import datetime

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.audit import AuditEntry
from app.repositories.dialect import upsert_insert
from app.schemas.audit import AuditEntryCreate


async def add(connection: AsyncConnection, entry: AuditEntryCreate) -> None:
    """Insert the entry; writing the same entry again does nothing."""
    statement = (
        upsert_insert(connection.dialect.name, AuditEntry)
        .values(**entry.model_dump())
        .on_conflict_do_nothing(index_elements=[AuditEntry.id])
    )
    await connection.execute(statement)


def search_statement(
    *,
    action: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> Select[AuditEntry]:
    """Entries matching every filter given, newest first; `before` is the (occurred_at, id)
    to continue after. `since` is inclusive, `until` exclusive."""
    statement = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, action),
        (AuditEntry.resource, resource),
        (AuditEntry.actor, actor),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(AuditEntry.occurred_at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.occurred_at < until)
    if before is not None:
        statement = statement.where(tuple_(AuditEntry.occurred_at, AuditEntry.id) < tuple_(*before))
    return statement.order_by(AuditEntry.occurred_at.desc(), AuditEntry.id.desc()).limit(limit)


async def search(
    session: AsyncSession,
    *,
    action: str | None,
    resource: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditEntry]:
    statement = search_statement(
        action=action,
        resource=resource,
        actor=actor,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    return list((await session.scalars(statement)).all())
