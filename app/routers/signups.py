"""POST /signups."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Depends

from app.core.errors import problem_responses
from app.core.openapi import request_examples, success_response
from app.routers.deps import AfterCommitDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader
from app.routers.security import (
    AUTH_ERRORS,
    PUBLIC,
    OptionalCallerDep,
    check_scope,
    limit_anonymous_signups,
)
from app.schemas import examples
from app.schemas.user import UserCreate, UserWithWebhookSecret
from app.services import signups
from app.services.api_keys import Scope
from app.services.idempotency import IdempotencyKeyInProgress
from app.services.signups import EmailAlreadyRegistered
from app.services.users import user_location
from app.services.webhooks import WebhookUrlRefused
from app.tasks.welcome_email import send_welcome_email

router = APIRouter(tags=["signups"])


@router.post(
    "/signups",
    status_code=201,
    response_model=UserWithWebhookSecret,
    summary="Sign up; the welcome email is sent in the background",
    description="Public: at most SIGNUP_RATE_LIMIT per client address. Sent with an API key, "
    "it counts against that key's API_KEY_RATE_LIMIT instead. A `webhook_url` needs a key "
    "with `users:write`; the response then carries its signing secret, once.",
    responses={
        **success_response(
            201,
            "Signed up: the user, owed a welcome email (`pending`) that is sent after this "
            "response. `Location` is the user's URL.",
            examples={
                "signed_up": ("Signed up", examples.SIGNED_UP),
                "with_webhook": (
                    "With a webhook endpoint: the secret, shown this once",
                    examples.SIGNED_UP_WITH_WEBHOOK,
                ),
            },
        ),
        **problem_responses(
            EmailAlreadyRegistered,
            IdempotencyKeyInProgress,
            WebhookUrlRefused,
            *AUTH_ERRORS,
            body=True,
        ),
    },
    dependencies=[PUBLIC, Depends(limit_anonymous_signups)],
    # Anyone, or a key: the empty requirement makes the key optional in OpenAPI.
    openapi_extra={"security": [{}]},
)
async def create_signup(
    payload: Annotated[
        UserCreate, Body(openapi_examples=request_examples(examples.SIGNUP_REQUESTS))
    ],
    caller: OptionalCallerDep,
    session: SessionDep,
    settings: SettingsDep,
    after_commit: AfterCommitDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> UserWithWebhookSecret:
    if payload.webhook_url is not None:
        # A webhook endpoint and its signing secret are users:write business.
        check_scope(caller, Scope.USERS_WRITE)
    user = await signups.create(
        session, payload=payload, settings=settings, idempotency_key=idempotency_key
    )
    return after_commit.created(
        user,
        location=user_location(user.id),
        work=partial(send_welcome_email, user.id),
        action="user.signed_up",
        webhook=user.webhook_url is not None,
    )
