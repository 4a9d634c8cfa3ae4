"""SQL for API keys."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.api_key import ApiKey
from app.repositories.dialect import upsert_insert


async def insert(
    session: AsyncSession,
    *,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    now: datetime,
) -> ApiKey | None:
    """Insert a key; None if its name is taken (by a live or a revoked key)."""
    statement = (
        upsert_insert(session, ApiKey)
        .values(
            id=uuid.uuid4(),
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            scopes=scopes,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(ApiKey)
    )
    return (await session.scalars(statement)).one_or_none()


async def find_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


async def get_by_name(session: AsyncSession, name: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.name == name))


async def list_all(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())


async def revoke(session: AsyncSession, name: str, now: datetime) -> ApiKey | None:
    """Revoke the named key; None if there is no such key or it was revoked already."""
    statement = (
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(ApiKey)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def replace_key(
    session: AsyncSession,
    *,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    now: datetime,
) -> ApiKey | None:
    """Give the named key a new secret (live again, used never); None if it already has it.

    Conditional, so replicas starting together with the same new key replace it once.
    """
    statement = (
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.key_hash != key_hash)
        .values(
            prefix=prefix,
            key_hash=key_hash,
            scopes=scopes,
            created_at=now,
            last_used_at=None,
            revoked_at=None,
        )
        .returning(ApiKey)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def mark_used(
    session: AsyncSession, key_id: uuid.UUID, now: datetime, *, every: timedelta
) -> None:
    """Record a use, at most once per `every`: a key used a thousand times a second
    does not write a thousand times a second."""
    statement = (
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)
