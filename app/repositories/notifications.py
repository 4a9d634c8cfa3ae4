"""SQL for notifications."""

import uuid
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.notification import NOTIFICATION_STATES, Channel, Notification
from app.repositories.pagination import Page, paginate


async def insert_pending(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    channel: Channel,
    subject: str,
    body: str,
    now: datetime,
) -> Notification:
    """A notification owed to the user, due now."""
    statement = (
        insert(Notification)
        .values(
            id=uuid.uuid4(),
            user_id=user_id,
            channel=channel,
            subject=subject,
            body=body,
            created_at=now,
            **NOTIFICATION_STATES[channel].owed(now),
        )
        .returning(Notification)
    )
    return (await session.scalars(statement)).one()


async def get(session: AsyncSession, notification_id: uuid.UUID) -> Notification | None:
    return await session.get(Notification, notification_id)


async def list_for_user(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[Notification]:
    """A page of the user's notifications, newest first."""
    return await paginate(
        session,
        select(Notification).where(Notification.user_id == user_id),
        key=(Notification.created_at, Notification.id),
        cursor=cursor,
        limit=limit,
    )
