"""Notifications: send one to a user by email or webhook, read one, list a user's."""

import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body

from app.core.errors import problem_responses
from app.core.openapi import request_examples, success_response
from app.core.rate_limits import RateLimited
from app.routers.deps import AfterCommitDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader
from app.routers.security import AUTH_ERRORS, requires
from app.schemas import examples
from app.schemas.notification import NotificationCreate, NotificationPage, NotificationRead
from app.schemas.query import CursorQuery, LimitQuery
from app.services import notifications
from app.services.api_keys import Scope
from app.services.idempotency import IdempotencyKeyInProgress, IdempotencyKeyReused
from app.services.notifications import (
    NotificationNotFound,
    NotSendableByEmail,
    notification_location,
)
from app.services.users import UserNotFound
from app.services.webhooks import WebhookNotConfigured
from app.tasks.notifications import deliver_notification

router = APIRouter(
    tags=["notifications"], responses=problem_responses(*AUTH_ERRORS, validation=False)
)


@router.post(
    "/users/{user_id}/notifications",
    status_code=202,
    response_model=NotificationRead,
    summary="Notify a user by email or webhook; delivered in the background",
    description="At most NOTIFICATIONS_PER_USER_PER_HOUR per user (429 beyond, with Retry-After).",
    responses={
        **success_response(
            202,
            "Accepted: the notification, owed (`pending`) and delivered after this response. "
            "`Location` is its URL, to follow its status.",
            examples.NOTIFICATION_OWED,
        ),
        **problem_responses(
            UserNotFound,
            WebhookNotConfigured,
            NotSendableByEmail,
            IdempotencyKeyInProgress,
            IdempotencyKeyReused,
            RateLimited,
            body=True,
        ),
    },
    dependencies=[requires(Scope.NOTIFICATIONS_SEND)],
)
async def create_notification(
    user_id: uuid.UUID,
    payload: Annotated[
        NotificationCreate, Body(openapi_examples=request_examples(examples.NOTIFICATION_REQUESTS))
    ],
    session: SessionDep,
    settings: SettingsDep,
    after_commit: AfterCommitDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> NotificationRead:
    notification = await notifications.create(
        session,
        user_id=user_id,
        payload=payload,
        settings=settings,
        idempotency_key=idempotency_key,
    )
    return after_commit.created(
        notification,
        location=notification_location(notification.id),
        work=partial(deliver_notification, notification.channel, notification.id),
        action="notification.created",
        user_id=str(user_id),
        channel=notification.channel,
    )


@router.get(
    "/notifications/{notification_id}",
    response_model=NotificationRead,
    summary="A notification, with its delivery's live status",
    responses={
        **success_response(
            200, "The notification as it stands now.", examples.NOTIFICATION_DELIVERED
        ),
        **problem_responses(NotificationNotFound),
    },
    dependencies=[requires(Scope.NOTIFICATIONS_SEND)],
)
async def get_notification(notification_id: uuid.UUID, session: SessionDep) -> NotificationRead:
    return await notifications.get(session, notification_id=notification_id)


@router.get(
    "/users/{user_id}/notifications",
    response_model=NotificationPage,
    summary="A user's notifications, newest first, a page at a time",
    responses={
        **success_response(200, "A page of notifications, newest first.", examples.NOTIFICATIONS),
        **problem_responses(UserNotFound),
    },
    dependencies=[requires(Scope.NOTIFICATIONS_SEND)],
)
async def list_notifications(
    user_id: uuid.UUID,
    session: SessionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> NotificationPage:
    return await notifications.list_for_user(session, user_id=user_id, cursor=cursor, limit=limit)
