"""SQL for per-recipient quotas: one atomic statement per send, safe across replicas."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.recipient_quota import RecipientQuota
from app.repositories.dialect import upsert_insert


async def use_one(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    kind: str,
    limit: int,
    window: timedelta,
    now: datetime,
) -> bool:
    """Count one send to the user in the current window; False if `limit` are used up.

    One INSERT ... ON CONFLICT DO UPDATE ... WHERE: the row lock it takes makes
    concurrent sends from any number of processes count one after the other, so
    no two can both take the last one. A window that has closed starts afresh.

        INSERT INTO recipient_quotas (user_id, kind, window_started_at, used)
        VALUES (:user_id, :kind, :now, 1)
        ON CONFLICT (user_id, kind) DO UPDATE SET
          used = CASE WHEN recipient_quotas.window_started_at <= :closed THEN 1
                      ELSE recipient_quotas.used + 1 END,
          window_started_at = CASE WHEN recipient_quotas.window_started_at <= :closed
                                   THEN :now ELSE recipient_quotas.window_started_at END
        WHERE recipient_quotas.window_started_at <= :closed OR recipient_quotas.used < :limit
        RETURNING recipient_quotas.used
    """
    closed = now - window  # a window that started at or before this has ended
    expired = RecipientQuota.window_started_at <= closed
    insert = upsert_insert(session, RecipientQuota).values(
        user_id=user_id, kind=kind, window_started_at=now, used=1
    )
    statement = insert.on_conflict_do_update(
        index_elements=[RecipientQuota.user_id, RecipientQuota.kind],
        set_={
            "used": case((expired, 1), else_=RecipientQuota.used + 1),
            "window_started_at": case((expired, now), else_=RecipientQuota.window_started_at),
        },
        where=or_(expired, RecipientQuota.used < limit),
    ).returning(RecipientQuota.used)
    return (await session.execute(statement)).first() is not None


async def window_started_at(session: AsyncSession, *, user_id: uuid.UUID, kind: str) -> datetime:
    statement = select(RecipientQuota.window_started_at).where(
        RecipientQuota.user_id == user_id, RecipientQuota.kind == kind
    )
    started: datetime = (await session.execute(statement)).scalar_one()
    return started
