"""Notifications as the API creates and shows them."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models.base import TaskStatus
from app.models.notification import Channel, Notification
from app.schemas.fields import Subject
from app.schemas.query import NextCursor


class NotificationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel = Field(description="email: to the user's address; webhook: to their URL.")
    subject: Subject
    body: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] = Field(
        examples=["You can download it for the next 24 hours."]
    )


class NotificationRead(BaseModel):
    id: uuid.UUID = Field(description="Also the webhook-id header: the receiver's dedup key.")
    user_id: uuid.UUID
    channel: Channel
    subject: str
    body: str
    status: TaskStatus = Field(description="pending, running, retrying, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending or retrying one is due.")
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error: str | None

    @classmethod
    def from_model(cls, notification: Notification) -> "NotificationRead":
        return cls(
            id=notification.id,
            user_id=notification.user_id,
            channel=notification.channel,
            subject=notification.subject,
            body=notification.body,
            status=notification.status,
            attempts=notification.attempts,
            next_attempt_at=notification.next_attempt_at,
            created_at=notification.created_at,
            delivered_at=notification.delivered_at,
            failed_at=notification.failed_at,
            last_error=notification.last_error,
        )


class NotificationPage(BaseModel):
    items: list[NotificationRead]
    next_cursor: NextCursor
