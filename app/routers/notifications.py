"""Notifications: send one to a user by email or webhook, read one, list a user's."""

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Query, Response
from fastapi.responses import JSONResponse

from app.core.errors import (
    AUTH_ERRORS,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotificationNotFound,
    NotSendableByEmail,
    RateLimited,
    UserNotFound,
    WebhookNotConfigured,
    problem_responses,
)
from app.core.openapi import request_examples, success_response
from app.routers.deps import AuditDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader, replay
from app.routers.security import requires
from app.schemas import examples
from app.schemas.notification import NotificationCreate, NotificationPage, NotificationRead
from app.schemas.query import CursorQuery
from app.services import notifications
from app.services.api_keys import Scope
from app.services.idempotency import StoredResponse
from app.services.notifications import notification_location
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
    background_tasks: BackgroundTasks,
    audit: AuditDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> NotificationRead | JSONResponse:
    outcome = await notifications.create(session, user_id, payload, settings, idempotency_key)
    if isinstance(outcome, StoredResponse):
        return replay(outcome)
    # Committed with its pending delivery: scheduling now can only delay it
    # (to recovery, if this process dies first), never lose it.
    background_tasks.add_task(deliver_notification, outcome.channel, outcome.id)
    audit.record(
        "notification.created",
        f"notifications/{outcome.id}",
        user_id=str(user_id),
        channel=outcome.channel,
    )
    response.headers["Location"] = notification_location(outcome.id)
    return outcome


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
    return await notifications.get(session, notification_id)


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
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationPage:
    return await notifications.list_for_user(session, user_id, cursor=cursor, limit=limit)
