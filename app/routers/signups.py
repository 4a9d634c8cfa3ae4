"""POST /signups."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Response
from fastapi.responses import JSONResponse

from app.core.errors import (
    AUTH_ERRORS,
    EmailAlreadyRegistered,
    IdempotencyKeyInProgress,
    WebhookUrlRefused,
    problem_responses,
)
from app.core.openapi import request_examples, success_response
from app.routers.deps import AuditDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader, replay
from app.routers.security import (
    PUBLIC,
    OptionalCallerDep,
    check_scope,
    limit_anonymous_signups,
)
from app.schemas import examples
from app.schemas.user import UserCreate, UserWithWebhookSecret
from app.services import signups
from app.services.api_keys import Scope
from app.services.idempotency import StoredResponse
from app.services.signups import user_location
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
    background_tasks: BackgroundTasks,
    audit: AuditDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> UserWithWebhookSecret | JSONResponse:
    if payload.webhook_url is not None:
        # A webhook endpoint and its signing secret are users:write business.
        check_scope(caller, Scope.USERS_WRITE)
    outcome = await signups.create(session, payload, settings, idempotency_key)
    if isinstance(outcome, StoredResponse):
        return replay(outcome)
    # The user and the owed email are committed: scheduling now cannot lose the
    # email, only delay it until recovery if this process dies first.
    background_tasks.add_task(send_welcome_email, outcome.id)
    audit.record("user.signed_up", f"users/{outcome.id}", webhook=outcome.webhook_url is not None)
    response.headers["Location"] = user_location(outcome.id)
    return outcome
