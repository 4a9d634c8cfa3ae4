"""/users: find one by email; /users/{id}: read, change (the webhook endpoint), delete,
resend the welcome email, rotate the webhook signing secret."""

import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from app.core.errors import problem_responses
from app.core.openapi import request_examples, success_response
from app.core.rate_limits import RateLimited
from app.routers.deps import AfterCommitDep, AuditorDep, SessionDep, SettingsDep
from app.routers.security import AUTH_ERRORS, requires
from app.schemas import examples
from app.schemas.fields import EmailParameter
from app.schemas.user import UserList, UserRead, UserUpdate, UserWithWebhookSecret
from app.services import users
from app.services.api_keys import Scope
from app.services.users import UserNotFound, WelcomeEmailInProgress
from app.services.webhooks import WebhookNotConfigured, WebhookUrlRefused
from app.tasks.welcome_email import send_welcome_email

router = APIRouter(
    prefix="/users", tags=["users"], responses=problem_responses(*AUTH_ERRORS, validation=False)
)


@router.get(
    "",
    response_model=UserList,
    summary="Find a user by email address",
    description="Exact match on the address as signup stores it: normalised (lower case, "
    "the domain's Unicode form), so `Ada@Example.com` finds `ada@example.com`. "
    "An empty list when no one has it.",
    responses={
        **success_response(200, "The user with that address, or none.", examples.USERS_FOUND),
        **problem_responses(),
    },
    dependencies=[requires(Scope.USERS_READ)],
)
async def find_users(
    session: SessionDep,
    email: Annotated[
        EmailParameter,
        Query(description="The address to look up.", json_schema_extra={"format": "email"}),
    ],
) -> UserList:
    return UserList(items=await users.find_by_email(session, email=email))


@router.get(
    "/{user_id}",
    response_model=UserRead,
    summary="A user, with the welcome email's live status",
    responses={
        **success_response(200, "The user, as stored now.", examples.USER),
        **problem_responses(UserNotFound),
    },
    dependencies=[requires(Scope.USERS_READ)],
)
async def get_user(user_id: uuid.UUID, session: SessionDep) -> UserRead:
    return await users.get(session, user_id=user_id)


@router.patch(
    "/{user_id}",
    response_model=UserWithWebhookSecret,
    summary="Set, change or remove the webhook URL",
    description="A new `webhook_url` comes with a new signing secret, in this response only. "
    "The URL it already has changes nothing; null removes the endpoint and its secret.",
    responses={
        **success_response(
            200,
            "The user after the change, with the new signing secret if one was issued.",
            examples={
                "webhook_set": ("A webhook URL set: its new secret", examples.WEBHOOK_SET),
                "webhook_removed": ("The webhook endpoint removed", examples.WEBHOOK_REMOVED),
            },
        ),
        **problem_responses(UserNotFound, WebhookUrlRefused, body=True),
    },
    dependencies=[requires(Scope.USERS_WRITE)],
)
async def update_user(
    user_id: uuid.UUID,
    payload: Annotated[
        UserUpdate, Body(openapi_examples=request_examples(examples.USER_UPDATE_REQUESTS))
    ],
    session: SessionDep,
    settings: SettingsDep,
    auditor: AuditorDep,
) -> UserWithWebhookSecret:
    updated = await users.update(session, user_id=user_id, payload=payload, settings=settings)
    if updated.change is not None:
        auditor.record(updated.change, f"users/{user_id}")
    return updated.user


@router.post(
    "/{user_id}/webhook-secret/rotate",
    response_model=UserWithWebhookSecret,
    summary="Issue a new webhook signing secret, shown in this response only",
    description="Every delivery from now on, retries of earlier notifications included, is "
    "signed with the new secret and, until `webhook_previous_secret_expires_at` "
    "(WEBHOOK_SECRET_ROTATION_WINDOW_SECONDS, a day by default), with the one it replaces "
    "too: `webhook-signature` then carries both, and a receiver verifying with either "
    "accepts it. Switch the receiver to the new secret within that window.",
    responses={
        **success_response(
            200,
            "The new secret, shown this once, and until when the old one still signs.",
            examples.SECRET_ROTATED,
        ),
        **problem_responses(UserNotFound, WebhookNotConfigured),
    },
    dependencies=[requires(Scope.USERS_WRITE)],
)
async def rotate_webhook_secret(
    user_id: uuid.UUID, session: SessionDep, settings: SettingsDep, auditor: AuditorDep
) -> UserWithWebhookSecret:
    user = await users.rotate_webhook_secret(session, user_id=user_id, settings=settings)
    auditor.record("user.webhook_secret_rotated", f"users/{user_id}")
    return user


@router.delete(
    "/{user_id}",
    status_code=204,
    summary="Delete a user",
    responses={
        **success_response(204, "Deleted, with their notifications; the audit trail stays."),
        **problem_responses(UserNotFound),
    },
    dependencies=[requires(Scope.USERS_WRITE)],
)
async def delete_user(user_id: uuid.UUID, session: SessionDep, auditor: AuditorDep) -> Response:
    await users.delete(session, user_id=user_id)
    auditor.record("user.deleted", f"users/{user_id}")
    return Response(status_code=204)


@router.post(
    "/{user_id}/welcome-email/resend",
    status_code=202,
    response_model=UserRead,
    summary="Send the welcome email again once the last one has settled (or a first one "
    "to a user imported without)",
    description="At most WELCOME_RESENDS_PER_DAY per user (429 beyond, with Retry-After).",
    responses={
        **success_response(
            202,
            "A welcome email is owed again (`pending`), sent after this response.",
            examples.WELCOME_RESENT,
        ),
        **problem_responses(UserNotFound, WelcomeEmailInProgress, RateLimited),
    },
    dependencies=[requires(Scope.USERS_WRITE)],
)
async def resend_welcome_email(
    user_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    after_commit: AfterCommitDep,
) -> UserRead:
    user = await users.resend_welcome(session, user_id=user_id, settings=settings)
    after_commit.schedule(
        partial(send_welcome_email, user.id),
        action="user.welcome_email_resent",
        resource=f"users/{user_id}",
    )
    return user
