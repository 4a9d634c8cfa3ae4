"""Reading, changing and deleting users; re-sending their welcome email; their webhook secret."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import Conflict, NotFound
from app.integrations.webhooks import new_secret
from app.models.base import utcnow
from app.models.user import User
from app.repositories import users as users_repo
from app.schemas.user import UserRead, UserUpdate, UserWithWebhookSecret
from app.services import recipient_quotas
from app.services.webhooks import WebhookNotConfigured, vet_url


class UserNotFound(NotFound):
    slug = "user-not-found"
    title = "User not found"


class WelcomeEmailInProgress(Conflict):
    slug = "welcome-email-in-progress"
    title = "Welcome email still in progress"


@dataclass(frozen=True)
class Updated:
    """The user after a PATCH, and what changed, for the audit trail (None: nothing)."""

    user: UserWithWebhookSecret
    change: str | None


def user_location(user_id: uuid.UUID) -> str:
    return f"/users/{user_id}"


async def get(session: AsyncSession, *, user_id: uuid.UUID) -> UserRead:
    async with session.begin():
        return UserRead.from_model(await existing(session, user_id=user_id))


async def find_by_email(session: AsyncSession, *, email: str) -> list[UserRead]:
    """The user registered with `email` (already normalised, as signup stores it), if any."""
    async with session.begin():
        user = await users_repo.get_by_email(session, email)
        return [UserRead.from_model(user)] if user is not None else []


async def existing(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    """The user, inside the caller's transaction; UserNotFound (404) if there is none."""
    user = await users_repo.get(session, user_id)
    if user is None:
        raise UserNotFound(f"no user with id {user_id}")
    return user


async def update(
    session: AsyncSession, *, user_id: uuid.UUID, payload: UserUpdate, settings: Settings
) -> Updated:
    """Apply the fields sent. A new webhook URL comes with a new signing secret, returned once;
    the same URL again changes nothing; null removes the endpoint and its secret."""
    if "webhook_url" not in payload.model_fields_set:
        async with session.begin():
            unchanged = await existing(session, user_id=user_id)
            return Updated(UserWithWebhookSecret.from_model(unchanged), None)
    url = await vet_url(payload.webhook_url, settings) if payload.webhook_url else None
    secret = new_secret() if url else None
    async with session.begin():
        user = await users_repo.set_webhook(session, user_id, url=url, secret=secret)
        if user is None:  # no such user, or the URL it already has
            unchanged = await existing(session, user_id=user_id)
            return Updated(UserWithWebhookSecret.from_model(unchanged), None)
        changed = UserWithWebhookSecret.from_model(user)
    change = "user.webhook_set" if url else "user.webhook_removed"
    return Updated(changed.model_copy(update={"webhook_secret": secret}), change)


async def rotate_webhook_secret(
    session: AsyncSession, *, user_id: uuid.UUID, settings: Settings
) -> UserWithWebhookSecret:
    """Issue a new signing secret; the old one signs beside it for the rotation window."""
    secret = new_secret()
    window = settings.webhook_secret_rotation_window_seconds
    previous_until = utcnow() + timedelta(seconds=window) if window else None
    async with session.begin():
        user = await users_repo.rotate_webhook_secret(session, user_id, secret, previous_until)
        if user is None:
            await existing(session, user_id=user_id)
            raise WebhookNotConfigured("set a webhook_url first (PATCH /users/{id})")
        rotated = UserWithWebhookSecret.from_model(user)
    return rotated.model_copy(update={"webhook_secret": secret})


async def delete(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    async with session.begin():
        if not await users_repo.delete_by_id(session, user_id):
            raise UserNotFound(f"no user with id {user_id}")


async def resend_welcome(
    session: AsyncSession, *, user_id: uuid.UUID, settings: Settings
) -> UserRead:
    """Owe the user a new welcome email, within WELCOME_RESENDS_PER_DAY; committed before
    it returns (contract rule 1)."""
    now = utcnow()
    async with session.begin():
        user = await users_repo.rearm_welcome(session, user_id, now)
        if user is not None:
            # Raising here rolls the rearm back: a refused resend owes nothing.
            quota = recipient_quotas.WELCOME_RESENDS
            await recipient_quotas.use(
                session, quota=quota, user_id=user_id, settings=settings, now=now
            )
            return UserRead.from_model(user)
        await existing(session, user_id=user_id)
    raise WelcomeEmailInProgress(
        "the welcome email is still pending, running or retrying; resend once it has settled"
    )
