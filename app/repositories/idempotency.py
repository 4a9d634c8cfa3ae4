"""SQL for Idempotency-Key records."""

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.idempotency import IdempotencyKey
from app.repositories.dialect import upsert_insert


async def reserve(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Take the key for this request: True if it was free or had expired.

    One statement: a concurrent request with the same key blocks on the primary
    key until ours commits, then sees our stored response instead of racing us.
    """
    insert = upsert_insert(session, IdempotencyKey).values(
        scope=scope, key=key, fingerprint=fingerprint, created_at=now, expires_at=expires_at
    )
    statement = insert.on_conflict_do_update(
        index_elements=[IdempotencyKey.scope, IdempotencyKey.key],
        set_={
            "fingerprint": insert.excluded.fingerprint,
            "created_at": insert.excluded.created_at,
            "expires_at": insert.excluded.expires_at,
            "response_status": None,
            "response_body": None,
            "response_location": None,
        },
        where=IdempotencyKey.expires_at <= now,
    ).returning(IdempotencyKey.key)
    result = await session.execute(statement)
    return result.first() is not None


async def get(session: AsyncSession, *, scope: str, key: str) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )


async def store_response(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    status: int,
    body: Any,
    location: str | None,
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(response_status=status, response_body=body, response_location=location)
    )
