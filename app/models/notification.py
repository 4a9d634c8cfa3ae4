"""Notifications to a user by email or webhook, each with its delivery state in its own row."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TaskStatus, UTCDateTime, task_status_type, utcnow
from app.models.task_state import TaskState


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # A deleted user's notifications go with them: there is no one left to deliver to.
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(
        Enum(
            Channel,
            name="channel",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda members: [member.value for member in members],
            validate_strings=True,
        )
    )
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # The delivery's task state (see NOTIFICATION_STATES: one kind per channel).
    status: Mapped[TaskStatus] = mapped_column(task_status_type("status"))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # A user's notifications, newest first, a page at a time.
        Index("ix_notifications_user_id_created_at_id", "user_id", "created_at", "id"),
        # Recovery's due work and the dead-letter list, per channel (each channel is
        # its own task kind), partial so they hold only the rows that need attention.
        Index(
            "ix_notifications_due",
            "channel",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retrying')"),
            sqlite_where=text("status IN ('pending', 'retrying')"),
        ),
        Index(
            "ix_notifications_lease",
            "channel",
            "lease_until",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index(
            "ix_notifications_failed",
            "channel",
            "failed_at",
            "id",
            postgresql_where=text("status = 'failed'"),
            sqlite_where=text("status = 'failed'"),
        ),
        # Retention: delivered notifications, oldest first.
        Index(
            "ix_notifications_succeeded",
            "succeeded_at",
            postgresql_where=text("status = 'succeeded'"),
            sqlite_where=text("status = 'succeeded'"),
        ),
    )


def _notification_state(channel: Channel) -> TaskState:
    return TaskState(
        name=f"notification_{channel}",
        model=Notification,
        id=Notification.id,
        created_at=Notification.created_at,
        status=Notification.status,
        attempts=Notification.attempts,
        next_attempt_at=Notification.next_attempt_at,
        lease_until=Notification.lease_until,
        succeeded_at=Notification.succeeded_at,
        failed_at=Notification.failed_at,
        last_error=Notification.last_error,
        where=(Notification.channel == channel,),
    )


# One table, one task kind per channel: each channel has its own concurrency limit,
# metrics and dead letters, and a slow webhook receiver never holds up email.
NOTIFICATION_STATES = {channel: _notification_state(channel) for channel in Channel}
