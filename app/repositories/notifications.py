"""SQL for notifications."""

import uuid
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.base import TaskStatus
from app.models.notification import Channel, Notification


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
            status=TaskStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )
        .returning(Notification)
    )
    return (await session.scalars(statement)).one()


async def get(session: AsyncSession, notification_id: uuid.UUID) -> Notification | None:
    return await session.get(Notification, notification_id)


async def list_for_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Notification]:
    """Newest first; `before` is the (created_at, id) to continue after."""
    statement = select(Notification).where(Notification.user_id == user_id)
    if before is not None:
        statement = statement.where(
            tuple_(Notification.created_at, Notification.id) < tuple_(*before)
        )
    statement = statement.order_by(Notification.created_at.desc(), Notification.id.desc())
    return list((await session.scalars(statement.limit(limit))).all())
