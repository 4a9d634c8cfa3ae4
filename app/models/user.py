"""Users, with their welcome email's delivery state kept beside the row it belongs to."""

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TaskStatus, UTCDateTime, task_status_type, utcnow
from app.models.task_state import TaskState


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where webhook notifications go, checked by the SSRF guard when it is set.
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # The Standard Webhooks signing key ("whsec_" + base64). HMAC needs the key
    # itself to sign, so it is stored as issued; the API shows it once, when it is
    # issued, and it is never logged. deferred: loading a user does not read it.
    webhook_secret: Mapped[str | None] = mapped_column(String(100), deferred=True)
    # After a rotation, the secret it replaced, which keeps signing beside the new
    # one until the expiry, so a receiver still verifying with it has time to switch.
    webhook_previous_secret: Mapped[str | None] = mapped_column(String(100), deferred=True)
    webhook_previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The welcome email's state lives in the user's own row, so the signup
    # transaction that creates the user also records that an email is owed.
    # NULL: none is owed, nor was one ever sent (imported with send_welcome=false).
    # Written by WELCOME_EMAIL_STATE's transitions (owed, claimed, settled, re-armed).
    welcome_status: Mapped[TaskStatus | None] = mapped_column(task_status_type("welcome_status"))
    # Which welcome message this is, for its Message-ID: 1 for the first; 0 while none is owed.
    welcome_generation: Mapped[int] = mapped_column(Integer)
    welcome_attempts: Mapped[int] = mapped_column(Integer)
    welcome_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    welcome_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    welcome_succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    welcome_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    welcome_last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Recovery looks for due work with these two; partial, so they hold only
        # the few unfinished rows, not every user who ever signed up.
        Index(
            "ix_users_welcome_due",
            "welcome_next_attempt_at",
            postgresql_where=text("welcome_status IN ('pending', 'retrying')"),
            sqlite_where=text("welcome_status IN ('pending', 'retrying')"),
        ),
        Index(
            "ix_users_welcome_lease",
            "welcome_lease_until",
            postgresql_where=text("welcome_status = 'running'"),
            sqlite_where=text("welcome_status = 'running'"),
        ),
        # The admin dead-letter list, newest first.
        Index(
            "ix_users_welcome_failed",
            "welcome_failed_at",
            "id",
            postgresql_where=text("welcome_status = 'failed'"),
            sqlite_where=text("welcome_status = 'failed'"),
        ),
    )


WELCOME_EMAIL_STATE = TaskState(
    name="welcome_email",
    model=User,
    id=User.id,
    created_at=User.created_at,
    status=User.welcome_status,
    attempts=User.welcome_attempts,
    next_attempt_at=User.welcome_next_attempt_at,
    lease_until=User.welcome_lease_until,
    succeeded_at=User.welcome_succeeded_at,
    failed_at=User.welcome_failed_at,
    last_error=User.welcome_last_error,
)
