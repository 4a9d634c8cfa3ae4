"""Signing up: create the user and record, in the same commit, that a welcome email is owed."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import Conflict
from app.integrations.webhooks import new_secret
from app.models.base import utcnow
from app.repositories import users as users_repo
from app.schemas.user import UserCreate, UserWithWebhookSecret
from app.services.idempotency import IdempotencyGuard
from app.services.users import user_location
from app.services.webhooks import vet_url

IDEMPOTENCY_SCOPE = "POST /signups"


class EmailAlreadyRegistered(Conflict):
    slug = "email-already-registered"
    title = "Email already registered"


async def create(
    session: AsyncSession,
    *,
    payload: UserCreate,
    settings: Settings,
    idempotency_key: str | None = None,
) -> UserWithWebhookSecret:
    """The new user, committed with the welcome email it is owed (contract rule 1).

    With a webhook URL, the response carries its signing secret, once: a replay
    for the same Idempotency-Key does not repeat it (rotate to get a new one).
    """
    webhook_url = await vet_url(payload.webhook_url, settings) if payload.webhook_url else None
    secret = new_secret() if webhook_url else None
    now = utcnow()
    guard = IdempotencyGuard(IDEMPOTENCY_SCOPE, idempotency_key)
    async with session.begin():
        # Without None fields: a body without webhook_url fingerprints as before.
        await guard.reserve(session, payload.model_dump(exclude_none=True), now)
        user = await users_repo.insert(
            session,
            email=payload.email,
            name=payload.name,
            now=now,
            webhook_url=webhook_url,
            webhook_secret=secret,
        )
        if user is None:
            raise EmailAlreadyRegistered(f"{payload.email} is already registered")
        created = UserWithWebhookSecret.from_model(user)
        # Stored before the secret is added: the stored copy never holds it.
        await guard.remember(
            session, status_code=201, created=created, location=user_location(user.id)
        )
    return created.model_copy(update={"webhook_secret": secret})
