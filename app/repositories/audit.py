"""SQL for audit entries."""

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import execute_alone
from app.models.audit import AuditEntry
from app.repositories.dialect import upsert_insert
from app.schemas.audit import AuditEntryCreate


async def add(engine: AsyncEngine, entry: AuditEntryCreate) -> None:
    """Insert the entry, as a transaction of its own; writing the same entry again does nothing."""
    statement = (
        upsert_insert(engine.dialect.name, AuditEntry)
        .values(**entry.model_dump())
        .on_conflict_do_nothing(index_elements=[AuditEntry.id])
    )
    await execute_alone(engine, statement)
