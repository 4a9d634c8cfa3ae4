"""Notifications as the API creates and shows them."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models.notification import NOTIFICATION_STATES, Channel, Notification
from app.schemas.fields import Subject
from app.schemas.query import NextCursor
from app.schemas.task_state import TaskStateRead


class NotificationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel = Field(description="email: to the user's address; webhook: to their URL.")
    subject: Subject
    body: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] = Field(
        examples=["You can download it for the next 24 hours."]
    )


class NotificationRead(TaskStateRead):
    """A notification and its delivery: succeeded_at is when the mail server or the
    webhook receiver accepted it."""

    id: uuid.UUID = Field(description="Also the webhook-id header: the receiver's dedup key.")
    user_id: uuid.UUID
    channel: Channel
    subject: str
    body: str
    created_at: datetime

    @classmethod
    def from_model(cls, notification: Notification) -> "NotificationRead":
        return cls.model_validate(
            {
                "id": notification.id,
                "user_id": notification.user_id,
                "channel": notification.channel,
                "subject": notification.subject,
                "body": notification.body,
                "created_at": notification.created_at,
                **TaskStateRead.fields(NOTIFICATION_STATES[notification.channel], notification),
            }
        )


class NotificationPage(BaseModel):
    items: list[NotificationRead]
    next_cursor: NextCursor
