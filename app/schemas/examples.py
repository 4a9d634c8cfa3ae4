"""Examples for the OpenAPI document: what requests look like, and what the API answers.

Every response example is an instance of the model the route returns, so it
cannot drift from the schema; tests/test_openapi.py validates each against the
published schema too, and sends each request example to the API.

A request example must work when sent as it is from Swagger UI: the first
(prefilled) one works anywhere; the webhook ones need `example.com` to resolve,
and are refused (422) where there is no DNS, as their descriptions say.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.openapi.models import Example
from pydantic import BaseModel

from app.core.migrations import head_revision
from app.models.base import TaskStatus
from app.models.notification import Channel
from app.schemas.admin import (
    FailedTaskPage,
    FailedTaskRead,
    TaskKindSummary,
    TaskRead,
    TasksOverview,
)
from app.schemas.audit import AuditEntryRead, AuditPage
from app.schemas.health import Health, Readiness
from app.schemas.notification import NotificationPage, NotificationRead
from app.schemas.upload import UploadPage, UploadRead, UploadRowErrorRead, UploadSummary
from app.schemas.user import UserList, UserRead, UserWithWebhookSecret, WelcomeEmailRead

# A public host that resolves wherever there is DNS; nothing there answers webhooks.
WEBHOOK_URL = "https://example.com/webhooks/signup-service"
_NEEDS_DNS = (
    "The URL must resolve to a public address: where `example.com` does not resolve (no "
    "DNS, an air-gapped network), the answer is 422 webhook-url-refused."
)

# Request bodies, as Swagger UI offers them (the first one prefilled).
SIGNUP_REQUESTS: dict[str, Example] = {
    "signup": {
        "summary": "Sign up",
        "value": {"email": "ada@example.com", "name": "Ada Lovelace"},
    },
    "signup_with_webhook": {
        "summary": "Sign up with a webhook endpoint",
        "description": f"The response carries the signing secret, once. {_NEEDS_DNS}",
        "value": {"email": "grace@example.com", "name": "Grace Hopper", "webhook_url": WEBHOOK_URL},
    },
}
USER_UPDATE_REQUESTS: dict[str, Example] = {
    "set_webhook": {
        "summary": "Set or change the webhook URL",
        "description": f"Issues a new signing secret, shown in the response only. {_NEEDS_DNS}",
        "value": {"webhook_url": WEBHOOK_URL},
    },
    "remove_webhook": {
        "summary": "Remove the webhook endpoint",
        "value": {"webhook_url": None},
    },
}
NOTIFICATION_REQUESTS: dict[str, Example] = {
    "email": {
        "summary": "By email",
        "value": {
            "channel": "email",
            "subject": "Your export is ready",
            "body": "Download it within 24 hours.",
        },
    },
    "webhook": {
        "summary": "By webhook",
        "description": "409 webhook-not-configured if the user has no webhook URL.",
        "value": {
            "channel": "webhook",
            "subject": "Your export is ready",
            "body": "Download it within 24 hours.",
        },
    },
}

_USER_ID = uuid.UUID("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d")
_NOTIFICATION_ID = uuid.UUID("5f0c6e2a-8d4b-4c1e-9a3f-6b2d8e4f1a7c")
_UPLOAD_ID = uuid.UUID("c2a9f1e4-7b3d-4e8a-b5c6-1d2e3f4a5b6c")
_AT = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
# Made up, in the format the API issues.
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw1lCV3AHnpdk="  # noqa: S105
_ROTATED_SECRET = "whsec_3Qw1nYc0LwWZxq8m6kH2pR5tV7yB9dF4gJ1sA0eN2uI="  # noqa: S105


def _later(seconds: float) -> datetime:
    return _AT + timedelta(seconds=seconds)


_WELCOME_PENDING = WelcomeEmailRead(
    status=TaskStatus.PENDING,
    attempts=0,
    next_attempt_at=_AT,
    succeeded_at=None,
    failed_at=None,
    last_error=None,
)
_WELCOME_SENT = _WELCOME_PENDING.model_copy(
    update={
        "status": TaskStatus.SUCCEEDED,
        "attempts": 1,
        "next_attempt_at": None,
        "succeeded_at": _later(0.4),
    }
)
USER = UserRead(
    id=_USER_ID,
    email="ada@example.com",
    name="Ada Lovelace",
    created_at=_AT,
    webhook_url=None,
    welcome_email=_WELCOME_SENT,
)
WELCOME_RESENT = USER.model_copy(update={"welcome_email": _WELCOME_PENDING})
USERS_FOUND = UserList(items=[USER])


def _as_issued(user: UserRead, **changes: Any) -> UserWithWebhookSecret:
    """The user as a response that may issue a webhook secret shows them."""
    return UserWithWebhookSecret(**{**dict(user), **changes})


SIGNED_UP = _as_issued(WELCOME_RESENT)
SIGNED_UP_WITH_WEBHOOK = _as_issued(WELCOME_RESENT, webhook_url=WEBHOOK_URL, webhook_secret=_SECRET)
WEBHOOK_SET = _as_issued(USER, webhook_url=WEBHOOK_URL, webhook_secret=_SECRET)
WEBHOOK_REMOVED = _as_issued(USER)
SECRET_ROTATED = _as_issued(
    USER,
    webhook_url=WEBHOOK_URL,
    webhook_previous_secret_expires_at=_later(86_400),
    webhook_secret=_ROTATED_SECRET,
)

NOTIFICATION_OWED = NotificationRead(
    id=_NOTIFICATION_ID,
    user_id=_USER_ID,
    channel=Channel.EMAIL,
    subject="Your export is ready",
    body="Download it within 24 hours.",
    status=TaskStatus.PENDING,
    attempts=0,
    next_attempt_at=_later(60),
    created_at=_later(60),
    succeeded_at=None,
    failed_at=None,
    last_error=None,
)
NOTIFICATION_DELIVERED = NOTIFICATION_OWED.model_copy(
    update={
        "status": TaskStatus.SUCCEEDED,
        "attempts": 1,
        "next_attempt_at": None,
        "succeeded_at": _later(60.3),
    }
)
NOTIFICATIONS = NotificationPage(items=[NOTIFICATION_DELIVERED], next_cursor=None)

_UPLOAD = UploadSummary(
    id=_UPLOAD_ID,
    filename="people.csv",
    size_bytes=96,
    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    send_welcome=True,
    status=TaskStatus.SUCCEEDED,
    attempts=1,
    next_attempt_at=None,
    bytes_read=96,
    rows_total=3,
    rows_imported=2,
    rows_duplicate=0,
    rows_rejected=1,
    ignored_columns=[],
    created_at=_later(120),
    started_at=_later(120.1),
    content_deleted_at=None,
    succeeded_at=_later(120.2),
    failed_at=None,
    last_error=None,
)
_ERRORS_CSV = f"/uploads/{_UPLOAD_ID}/errors.csv"
UPLOAD_IMPORTED = UploadRead(
    **dict(_UPLOAD),
    first_errors=[
        UploadRowErrorRead(
            line=4,
            email="not-an-email",
            name="Mallory",
            reason="email: An email address must have an @-sign.",
        )
    ],
    errors_csv=_ERRORS_CSV,
)
UPLOAD_ACCEPTED = UploadRead(
    **{
        **dict(_UPLOAD),
        "status": TaskStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": _later(120),
        "bytes_read": 0,
        "rows_total": 0,
        "rows_imported": 0,
        "rows_rejected": 0,
        "started_at": None,
        "succeeded_at": None,
    },
    first_errors=[],
    errors_csv=_ERRORS_CSV,
)
UPLOADS = UploadPage(items=[_UPLOAD], next_cursor=None)
ERRORS_CSV = (
    "line,email,name,reason\r\n"
    "4,not-an-email,Mallory,email: An email address must have an @-sign.\r\n"
)


def _counts(**counts: int) -> dict[TaskStatus, int]:
    return {status: counts.get(status.value, 0) for status in TaskStatus}


TASKS = TasksOverview(
    kinds=[
        TaskKindSummary(
            kind="welcome_email",
            counts=_counts(succeeded=148_020, retrying=2, failed=1),
            succeeded_is_estimate=True,
            due=2,
            oldest_due_age_seconds=4.2,
        ),
        TaskKindSummary(
            kind="csv_import",
            counts=_counts(succeeded=3),
            succeeded_is_estimate=False,
            due=0,
            oldest_due_age_seconds=None,
        ),
        TaskKindSummary(
            kind="notification_email",
            counts=_counts(),
            succeeded_is_estimate=False,
            due=0,
            oldest_due_age_seconds=None,
        ),
        TaskKindSummary(
            kind="notification_webhook",
            counts=_counts(succeeded=12),
            succeeded_is_estimate=False,
            due=0,
            oldest_due_age_seconds=None,
        ),
    ]
)
_FAILED = FailedTaskRead(
    kind="welcome_email",
    id=_USER_ID,
    status=TaskStatus.FAILED,
    attempts=1,
    last_error="SMTP 550: 5.1.1 no such mailbox",
    created_at=_AT,
    failed_at=_later(0.5),
)
FAILED_TASKS = FailedTaskPage(items=[_FAILED], next_cursor=None)
# Owed afresh: no attempt made, and nothing of the failed run's outcome kept.
TASK_RETRIED = TaskRead(
    **{
        **dict(_FAILED),
        "status": TaskStatus.PENDING,
        "attempts": 0,
        "failed_at": None,
        "last_error": None,
    }
)
AUDIT = AuditPage(
    items=[
        AuditEntryRead(
            id=uuid.UUID("0d6f1c2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5"),
            occurred_at=_AT,
            actor="anonymous",
            action="user.signed_up",
            resource=f"users/{_USER_ID}",
            request_id="8a330a72a3744cb796f54aeba97040b2",
            client_address="203.0.113.7",
            details={"webhook": False},
        )
    ],
    next_cursor="BmEuAh1bImooMCKbHkSOmMHWm0Cgmsw",
)
METRICS = (
    "# HELP signup_tasks_succeeded_total Attempts that succeeded, by task kind.\n"
    "# TYPE signup_tasks_succeeded_total counter\n"
    'signup_tasks_succeeded_total{kind="welcome_email"} 1480.0\n'
    "# HELP signup_tasks_due Rows due now (waiting for a run or for recovery).\n"
    "# TYPE signup_tasks_due gauge\n"
    'signup_tasks_due{kind="welcome_email"} 2.0\n'
)
HEALTH = Health()
READY = Readiness(migration=head_revision())


def json_example(model: BaseModel) -> Any:
    """An example as the API sends it."""
    return model.model_dump(mode="json")
