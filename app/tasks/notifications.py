"""Notification delivery by email or webhook: what to send and where. The runner does the rest.

Each channel is its own task kind, with its own concurrency limit
(NOTIFICATION_{EMAIL,WEBHOOK}_CONCURRENCY): a slow webhook receiver fills the
webhook slots only, and email goes on.
"""

import html
import uuid

from sqlalchemy.engine import RowMapping

from app.core.db import single_statement
from app.integrations import webhooks
from app.integrations.errors import PermanentDeliveryError
from app.integrations.mailer import compose, mail_domain
from app.models.base import TaskStatus
from app.models.notification import NOTIFICATION_STATES, Channel, Notification
from app.repositories import notifications as notifications_repo
from app.tasks.runner import Claim, TaskKind, run_task
from app.tasks.runtime import Runtime

WEBHOOK_EVENT_TYPE = "user.notification"


async def deliver_notification(channel: Channel, notification_id: uuid.UUID) -> TaskStatus | None:
    """The BackgroundTasks entry point: ids in, nothing raised."""
    return await run_task(NOTIFICATION_KINDS[channel], notification_id)


def notification_message_id(notification_id: uuid.UUID, sender: str) -> str:
    """Deterministic, so a receiver can drop the duplicate of an at-least-once resend."""
    return f"<notification.{notification_id}@{mail_domain(sender)}>"


def webhook_payload(claim: Claim) -> dict[str, object]:
    """The JSON body, in the envelope Standard Webhooks suggests: type, timestamp, data."""
    row = claim.row
    return {
        "type": WEBHOOK_EVENT_TYPE,
        "timestamp": row["created_at"].isoformat().replace("+00:00", "Z"),
        "data": {
            "id": str(claim.row_id),
            "user_id": str(row["user_id"]),
            "subject": row["subject"],
            "body": row["body"],
        },
    }


async def _recipient(runtime: Runtime, claim: Claim) -> RowMapping:
    async with single_statement(runtime.engine) as connection:
        recipient = await notifications_repo.recipient(connection, claim.row["user_id"])
    if recipient is None:  # deleting a user deletes their notifications; belt and braces
        raise PermanentDeliveryError("the user no longer exists")
    return recipient


async def _send_email(runtime: Runtime, claim: Claim) -> None:
    recipient = await _recipient(runtime, claim)
    sender = runtime.settings.mail_from
    body = claim.row["body"]
    message = compose(
        sender=sender,
        to=recipient["email"],
        subject=claim.row["subject"],
        text=body,
        html=f'<p style="white-space: pre-wrap">{html.escape(body)}</p>',
        message_id=notification_message_id(claim.row_id, sender),
    )
    await runtime.mailer.send(message)


async def _send_webhook(runtime: Runtime, claim: Claim) -> None:
    recipient = await _recipient(runtime, claim)
    if not recipient["webhook_url"] or not recipient["webhook_secret"]:
        raise PermanentDeliveryError("the user has no webhook URL any more")
    await webhooks.send(
        runtime.http,
        url=recipient["webhook_url"],
        secret=recipient["webhook_secret"],
        message_id=str(claim.row_id),
        payload=webhook_payload(claim),
        timeout_seconds=runtime.settings.webhook_timeout_seconds,
    )


_COLUMNS = (Notification.user_id, Notification.subject, Notification.body, Notification.created_at)

NOTIFICATION_EMAIL = TaskKind(
    name="notification_email",
    state=NOTIFICATION_STATES[Channel.EMAIL],
    perform=_send_email,
    concurrency=lambda settings: settings.notification_email_concurrency,
    returning=_COLUMNS,
)
NOTIFICATION_WEBHOOK = TaskKind(
    name="notification_webhook",
    state=NOTIFICATION_STATES[Channel.WEBHOOK],
    perform=_send_webhook,
    concurrency=lambda settings: settings.notification_webhook_concurrency,
    returning=_COLUMNS,
)
NOTIFICATION_KINDS = {Channel.EMAIL: NOTIFICATION_EMAIL, Channel.WEBHOOK: NOTIFICATION_WEBHOOK}
