"""SQL for audit entries."""

from sqlalchemy.ext.asyncio import AsyncConnection

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
