"""Signing up: create the user and record, in the same commit, that a welcome email is owed."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import EmailAlreadyRegistered
from app.models.base import utcnow
from app.repositories import users as users_repo
from app.schemas.user import UserCreate, UserRead
from app.services import idempotency
from app.services.idempotency import StoredResponse

IDEMPOTENCY_SCOPE = "POST /signups"


async def create(
    session: AsyncSession, payload: UserCreate, idempotency_key: str | None = None
) -> UserRead | StoredResponse:
    """The new user, committed; or, for a repeated Idempotency-Key, the first response."""
    now = utcnow()
    async with session.begin():
        if idempotency_key is not None:
            replay = await idempotency.reserve(
                session,
                scope=IDEMPOTENCY_SCOPE,
                key=idempotency_key,
                digest=idempotency.fingerprint(payload.model_dump()),
                now=now,
            )
            if replay is not None:
                return replay
        user = await users_repo.insert(session, email=payload.email, name=payload.name, now=now)
        if user is None:
            raise EmailAlreadyRegistered(f"{payload.email} is already registered")
        created = UserRead.from_model(user)
        if idempotency_key is not None:
            await idempotency.remember(
                session,
                scope=IDEMPOTENCY_SCOPE,
                key=idempotency_key,
                response=StoredResponse(
                    201, created.model_dump(mode="json"), user_location(user.id)
                ),
            )
    # Committed: only now may the caller schedule the welcome email.
    return created


def user_location(user_id: object) -> str:
    return f"/users/{user_id}"
