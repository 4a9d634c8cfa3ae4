"""Users and their welcome email, as the API reads and writes them."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.models.base import TaskStatus
from app.models.user import User
from app.schemas.fields import Email, PersonName


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: PersonName


class WelcomeEmailRead(BaseModel):
    status: TaskStatus = Field(description="pending, running, retrying, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending or retrying email is due.")
    sent_at: datetime | None
    last_error: str | None


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    welcome_email: WelcomeEmailRead | None = Field(
        description="Null when none is owed: the user was imported with send_welcome=false. "
        "Resending sends a first one."
    )

    @classmethod
    def from_model(cls, user: User) -> "UserRead":
        welcome_email = None
        if user.welcome_status is not None:
            welcome_email = WelcomeEmailRead(
                status=user.welcome_status,
                attempts=user.welcome_attempts,
                next_attempt_at=user.welcome_next_attempt_at,
                sent_at=user.welcome_sent_at,
                last_error=user.welcome_last_error,
            )
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            created_at=user.created_at,
            welcome_email=welcome_email,
        )
