"""Reading and deleting users, and re-sending their welcome email."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserNotFound, WelcomeEmailInProgress
from app.models.base import utcnow
from app.repositories import users as users_repo
from app.schemas.user import UserRead


async def get(session: AsyncSession, user_id: uuid.UUID) -> UserRead:
    async with session.begin():
        user = await users_repo.get(session, user_id)
        if user is None:
            raise UserNotFound(f"no user with id {user_id}")
        return UserRead.from_model(user)


async def delete(session: AsyncSession, user_id: uuid.UUID) -> None:
    async with session.begin():
        if not await users_repo.delete_by_id(session, user_id):
            raise UserNotFound(f"no user with id {user_id}")


async def resend_welcome(session: AsyncSession, user_id: uuid.UUID) -> UserRead:
    """Owe the user a new welcome email; committed before the caller schedules it."""
    async with session.begin():
        user = await users_repo.rearm_welcome(session, user_id, utcnow())
        if user is not None:
            return UserRead.from_model(user)
        if not await users_repo.exists(session, user_id):
            raise UserNotFound(f"no user with id {user_id}")
    raise WelcomeEmailInProgress(
        "the welcome email is still pending, running or retrying; resend once it has settled"
    )
