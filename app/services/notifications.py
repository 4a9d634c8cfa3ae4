"""Notifications: owe one to a user (committed before delivery is scheduled), read them back."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import (
    NotificationNotFound,
    NotSendableByEmail,
    UserNotFound,
    WebhookNotConfigured,
)
from app.integrations import mailer
from app.models.base import utcnow
from app.models.notification import Channel
from app.repositories import notifications as notifications_repo
from app.repositories import users as users_repo
from app.schemas.notification import NotificationCreate, NotificationPage, NotificationRead
from app.services import cursor as page_cursor
from app.services import recipient_quotas
from app.services.idempotency import IdempotencyGuard, StoredResponse

IDEMPOTENCY_SCOPE = "POST /users/{user_id}/notifications"


async def create(
    session: AsyncSession,
    user_id: uuid.UUID,
    payload: NotificationCreate,
    settings: Settings,
    idempotency_key: str | None = None,
) -> NotificationRead | StoredResponse:
    """The new notification, committed with its pending delivery; or the first response again."""
    now = utcnow()
    guard = IdempotencyGuard(IDEMPOTENCY_SCOPE, idempotency_key)
    async with session.begin():
        # The user is part of the request: one key for two users is a reuse.
        replay = await guard.reserve(session, {"user_id": user_id, **payload.model_dump()}, now)
        if replay is not None:
            return replay
        recipient = await users_repo.recipient_for_share(session, user_id)
        if recipient is None:
            raise UserNotFound(f"no user with id {user_id}")
        if payload.channel is Channel.WEBHOOK and recipient.webhook_url is None:
            raise WebhookNotConfigured(
                "this user has no webhook_url; set one with PATCH /users/{id} first"
            )
        if payload.channel is Channel.EMAIL:
            _check_sendable_by_email(recipient.email, payload)
        # In this transaction: a refusal also releases the Idempotency-Key reserved above.
        await recipient_quotas.use(
            session,
            recipient_quotas.NOTIFICATIONS,
            user_id=user_id,
            limit=settings.notifications_per_user_per_hour,
            now=now,
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
            StoredResponse(202, created.model_dump(mode="json"), notification_location(created.id)),
        )
    # Committed: only now may the caller schedule the delivery.
    return created


def _check_sendable_by_email(email: str, payload: NotificationCreate) -> None:
    """Refuse now what delivery would fail for good: the same checks the mailer makes."""
    try:
        mailer.check_header_text(payload.subject)
    except mailer.NotSendable as exc:
        raise NotSendableByEmail(f"subject: {exc}") from None
    try:
        mailer.ascii_address(email)
    except mailer.NotSendable as exc:
        raise NotSendableByEmail(f"the user's {exc}") from None


async def get(session: AsyncSession, notification_id: uuid.UUID) -> NotificationRead:
    async with session.begin():
        notification = await notifications_repo.get(session, notification_id)
        if notification is None:
            raise NotificationNotFound(f"no notification with id {notification_id}")
        return NotificationRead.from_model(notification)


async def list_for_user(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> NotificationPage:
    """The user's notifications, newest first, a page at a time."""
    before = page_cursor.decode(cursor) if cursor else None
    async with session.begin():
        if not await users_repo.exists(session, user_id):
            raise UserNotFound(f"no user with id {user_id}")
        rows = await notifications_repo.list_for_user(
            session, user_id, before=before, limit=limit + 1
        )
    page = [NotificationRead.from_model(row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = page_cursor.encode(page[-1].created_at, page[-1].id) if more else None
    return NotificationPage(items=page, next_cursor=next_cursor)


def notification_location(notification_id: object) -> str:
    return f"/notifications/{notification_id}"
