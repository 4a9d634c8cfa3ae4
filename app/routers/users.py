"""/users/{id}: read, delete, and resend the welcome email."""

import uuid

from fastapi import APIRouter, BackgroundTasks, Response

from app.core.errors import UserNotFound, WelcomeEmailInProgress, problem_responses
from app.routers.deps import AuditDep, SessionDep
from app.schemas.user import UserRead
from app.services import users
from app.tasks.welcome_email import send_welcome_email

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/{user_id}",
    response_model=UserRead,
    summary="A user, with the welcome email's live status",
    responses=problem_responses(UserNotFound),
)
async def get_user(user_id: uuid.UUID, session: SessionDep) -> UserRead:
    return await users.get(session, user_id)


@router.delete(
    "/{user_id}",
    status_code=204,
    summary="Delete a user",
    responses=problem_responses(UserNotFound),
)
async def delete_user(user_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> Response:
    await users.delete(session, user_id)
    audit.record("user.deleted", f"users/{user_id}")
    return Response(status_code=204)


@router.post(
    "/{user_id}/welcome-email/resend",
    status_code=202,
    response_model=UserRead,
    summary="Send the welcome email again once the last one has settled (or a first one "
    "to a user imported without)",
    responses=problem_responses(UserNotFound, WelcomeEmailInProgress),
)
async def resend_welcome_email(
    user_id: uuid.UUID, session: SessionDep, background_tasks: BackgroundTasks, audit: AuditDep
) -> UserRead:
    user = await users.resend_welcome(session, user_id)
    background_tasks.add_task(send_welcome_email, user.id)
    audit.record("user.welcome_email_resent", f"users/{user_id}")
    return user
