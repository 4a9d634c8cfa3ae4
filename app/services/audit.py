"""The audit trail as operators query it: filtered, newest first, a page at a time."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidQuery
from app.repositories import audit as audit_repo
from app.schemas.audit import AuditEntryRead, AuditPage
from app.services import cursor as page_cursor


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
    since, until = _utc("since", since), _utc("until", until)
    if since is not None and until is not None and since >= until:
        raise InvalidQuery("since must be earlier than until")
    before = page_cursor.decode(cursor) if cursor else None
    async with session.begin():
        rows = await audit_repo.search(
            session,
            action=action,
            resource=resource,
            actor=actor,
            since=since,
            until=until,
            before=before,
            limit=limit + 1,
        )
    page = [AuditEntryRead.model_validate(row, from_attributes=True) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = page_cursor.encode(page[-1].occurred_at, page[-1].id) if more else None
    return AuditPage(items=page, next_cursor=next_cursor)


def _utc(name: str, moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidQuery(f"{name} needs a time zone, e.g. 2026-11-22T10:00:00Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before year 1 in UTC
        raise InvalidQuery(f"{name} is out of range") from None
