"""Users and their welcome email, as the API reads and writes them."""

import uuid
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from app.models.base import utcnow
from app.models.user import WELCOME_EMAIL_STATE, User
from app.schemas.fields import Email, PersonName, WebhookUrl
from app.schemas.task_state import TaskStateRead


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: PersonName
    webhook_url: WebhookUrl | None = None


class UserUpdate(BaseModel):
    """Only the fields sent change; `"webhook_url": null` removes the webhook endpoint."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: WebhookUrl | None = None


class WelcomeEmailRead(TaskStateRead):
    """The welcome email's delivery: succeeded_at is when the mail server accepted it."""


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    webhook_url: str | None = Field(description="Where webhook notifications are sent, if set.")
    webhook_previous_secret_expires_at: datetime | None = Field(
        default=None,
        description="After a secret rotation: until when deliveries are also signed with the "
        "secret it replaced. Null when only the current secret signs.",
    )
    welcome_email: WelcomeEmailRead | None = Field(
        description="Null when none is owed: the user was imported with send_welcome=false. "
        "Resending sends a first one."
    )

    @classmethod
    def from_model(cls, user: User) -> Self:
        welcome_email = None
        if user.welcome_status is not None:
            welcome_email = WelcomeEmailRead.model_validate(
                TaskStateRead.fields(WELCOME_EMAIL_STATE, user)
            )
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            created_at=user.created_at,
            webhook_url=user.webhook_url,
            webhook_previous_secret_expires_at=_still_ahead(
                user.webhook_previous_secret_expires_at
            ),
            welcome_email=welcome_email,
        )


def _still_ahead(moment: datetime | None) -> datetime | None:
    return moment if moment is not None and moment > utcnow() else None


class UserList(BaseModel):
    """The users a search found: one or none, for an exact address."""

    items: list[UserRead]


class UserWithWebhookSecret(UserRead):
    """A user, and the webhook signing secret when this response is the one that issued it."""

    webhook_secret: str | None = Field(
        default=None,
        description="The webhook signing secret (`whsec_...`), in the response that issues it "
        "and never again: store it now. Null when this request issued none.",
    )
