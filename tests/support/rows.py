"""Put rows in a given task state directly, as a crash or an old deploy would leave them."""

import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import update

from app.models import User
from app.models.base import utcnow
from app.repositories import users as users_repo


async def insert_user(app: FastAPI, email: str, name: str = "Ada", **state: Any) -> uuid.UUID:
    """A user owing a welcome email, with no task scheduled; `state` overrides columns."""
    async with app.state.database.request_sessions() as session, session.begin():
        user = await users_repo.insert(session, email=email, name=name, now=utcnow())
        assert user is not None
        if state:
            await session.execute(update(User).where(User.id == user.id).values(**state))
        return user.id


def ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)


async def get_user(app: FastAPI, user_id: uuid.UUID) -> User:
    async with app.state.database.request_sessions() as session:
        user: User | None = await session.get(User, user_id)
    assert user is not None
    return user
