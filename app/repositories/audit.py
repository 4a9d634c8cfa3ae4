"""SQL for audit entries."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEntry
from app.repositories.dialect import upsert_insert
from app.schemas.audit import AuditEntryCreate


async def add(session: AsyncSession, entry: AuditEntryCreate) -> None:
    """Insert the entry; a second write of the same entry id does nothing."""
    statement = (
        upsert_insert(session, AuditEntry)
        .values(**entry.model_dump())
        .on_conflict_do_nothing(index_elements=[AuditEntry.id])
    )
    await session.execute(statement)
