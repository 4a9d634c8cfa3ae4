"""Notifications: owe one to a user by email or webhook, and read them back."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import NotFound, ServiceError
from app.integrations import mailer
from app.models.base import utcnow
from app.models.notification import Channel
from app.repositories import notifications as notifications_repo
from app.repositories import users as users_repo
from app.schemas.notification import NotificationCreate, NotificationPage, NotificationRead
from app.services import recipient_quotas
from app.services.idempotency import IdempotencyGuard
from app.services.users import UserNotFound, existing
from app.services.webhooks import WebhookNotConfigured

IDEMPOTENCY_SCOPE = "POST /users/{user_id}/notifications"


class NotificationNotFound(NotFound):
    slug = "notification-not-found"
    title = "Notification not found"


class NotSendableByEmail(ServiceError):
    """What the mail would carry cannot be sent as it stands: no retry could change that."""

    status = 422
    slug = "not-sendable-by-email"
    title = "Cannot be sent by email"


def notification_location(notification_id: uuid.UUID) -> str:
    return f"/notifications/{notification_id}"


async def create(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    payload: NotificationCreate,
    settings: Settings,
    idempotency_key: str | None = None,
) -> NotificationRead:
    """The new notification, committed with the delivery it is owed (contract rule 1)."""
    now = utcnow()
    guard = IdempotencyGuard(IDEMPOTENCY_SCOPE, idempotency_key)
    async with session.begin():
        # The user is part of the request: one key for two users is a reuse.
        await guard.reserve(session, {"user_id": user_id, **payload.model_dump()}, now)
        await _check_deliverable(session, user_id=user_id, payload=payload)
        # In this transaction: a refusal also releases the Idempotency-Key reserved above.
        quota = recipient_quotas.NOTIFICATIONS
        await recipient_quotas.use(
            session, quota=quota, user_id=user_id, settings=settings, now=now
        )
        notification = await notifications_repo.insert_pending(
            session,
            user_id=user_id,
            channel=payload.channel,
            subject=payload.subject,
            body=payload.body,
            now=now,
        )
        created = NotificationRead.from_model(notification)
        await guard.remember(
            session,
            status_code=202,
            created=created,
            location=notification_location(created.id),
        )
    return created


async def _check_deliverable(
    session: AsyncSession, *, user_id: uuid.UUID, payload: NotificationCreate
) -> None:
    """Refuse now what delivery would fail for good; the user's row is locked meanwhile."""
    recipient = await users_repo.recipient_for_share(session, user_id)
    if recipient is None:
        raise UserNotFound(f"no user with id {user_id}")
    if payload.channel is Channel.WEBHOOK and recipient.webhook_url is None:
        raise WebhookNotConfigured(
            "this user has no webhook_url; set one with PATCH /users/{id} first"
        )
    if payload.channel is Channel.EMAIL:
        # The same checks the mailer makes.
        try:
            mailer.check_header_text(payload.subject)
        except mailer.NotSendable as exc:
            raise NotSendableByEmail(f"subject: {exc}") from None
        try:
            mailer.ascii_address(recipient.email)
        except mailer.NotSendable as exc:
            raise NotSendableByEmail(f"the user's {exc}") from None


async def get(session: AsyncSession, *, notification_id: uuid.UUID) -> NotificationRead:
    async with session.begin():
        notification = await notifications_repo.get(session, notification_id)
        if notification is None:
            raise NotificationNotFound(f"no notification with id {notification_id}")
        return NotificationRead.from_model(notification)


async def list_for_user(
    session: AsyncSession, *, user_id: uuid.UUID, cursor: str | None, limit: int
) -> NotificationPage:
    """The user's notifications, newest first, a page at a time."""
    async with session.begin():
        await existing(session, user_id=user_id)
        page = await notifications_repo.list_for_user(session, user_id, cursor=cursor, limit=limit)
    return NotificationPage(
        items=[NotificationRead.from_model(row) for row in page.items],
        next_cursor=page.next_cursor,
    )
