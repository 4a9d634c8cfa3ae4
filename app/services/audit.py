"""The audit trail as operators query it: filtered, newest first, a page at a time."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.repositories import audit as audit_repo
from app.schemas.audit import AuditEntryRead, AuditPage

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


async def search(
    session: AsyncSession,
    *,
    action: str | None,
    resource: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> AuditPage:
    filters = audit_repo.AuditFilters(
        action=action, resource=resource, actor=actor, since=_utc(since), until=_utc(until)
    )
    async with session.begin():
        page = await audit_repo.search(session, filters, cursor=cursor, limit=limit)
    return AuditPage(
        items=[AuditEntryRead.model_validate(row, from_attributes=True) for row in page.items],
        next_cursor=page.next_cursor,
    )


def _utc(moment: datetime | None) -> datetime | None:
    """The moment in UTC; one past either end of datetime's range (0001-01-01T00:00+01:00)
    becomes that end, which as a bound means the same: before, or after, every entry."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return _EARLIEST if moment.year == _EARLIEST.year else _LATEST
