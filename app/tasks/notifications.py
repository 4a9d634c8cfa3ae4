"""Notification delivery by email or webhook: what to send and where. The runner does the rest.

Each channel is its own task kind, with its own concurrency limit
(NOTIFICATION_{EMAIL,WEBHOOK}_CONCURRENCY): a slow webhook receiver fills the
webhook slots only, and email goes on.
"""

import html
import uuid
from typing import Any

from sqlalchemy import Label, select
from sqlalchemy.orm import InstrumentedAttribute

from app.integrations import webhooks
from app.integrations.errors import PermanentDeliveryError
from app.integrations.mailer import compose, mail_domain
from app.models.base import TaskStatus, utcnow
from app.models.notification import NOTIFICATION_STATES, Channel, Notification
from app.models.user import User
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


async def _send_email(runtime: Runtime, claim: Claim) -> None:
    row = claim.row
    sender = runtime.settings.mail_from
    body = row["body"]
    message = compose(
        sender=sender,
        to=row["email"],
        subject=row["subject"],
        text=body,
        html=f'<p style="white-space: pre-wrap">{html.escape(body)}</p>',
        message_id=notification_message_id(claim.row_id, sender),
    )
    await runtime.mailer.send(message)


async def _send_webhook(runtime: Runtime, claim: Claim) -> None:
    row = claim.row
    if not row["webhook_url"] or not row["webhook_secret"]:
        raise PermanentDeliveryError("the user has no webhook URL any more")
    signing_secrets = [row["webhook_secret"]]
    previous_until = row["webhook_previous_secret_expires_at"]
    if row["webhook_previous_secret"] and previous_until is not None and previous_until > utcnow():
        signing_secrets.append(row["webhook_previous_secret"])
    await webhooks.send(
        runtime.http,
        url=row["webhook_url"],
        signing_secrets=signing_secrets,
        message_id=str(claim.row_id),
        payload=webhook_payload(claim),
        timeout_seconds=runtime.settings.webhook_timeout_seconds,
    )


def _users(column: InstrumentedAttribute[Any]) -> Label[Any]:
    """The notified user's `column`, read by the claim statement itself (a user's
    notifications are deleted with them, so a claimed row always has its user).

    Read at each attempt rather than copied into the notification, so a retry
    after a URL change or a secret rotation goes where, and is signed as, the
    user now expects; and read by the claim, not by a query of its own, which
    saves each delivery a round trip.
    """
    return select(column).where(User.id == Notification.user_id).scalar_subquery().label(column.key)


_COLUMNS = (
    Notification.user_id,
    Notification.subject,
    Notification.body,
    Notification.created_at,
    _users(User.email),
    _users(User.webhook_url),
    _users(User.webhook_secret),
    _users(User.webhook_previous_secret),
    _users(User.webhook_previous_secret_expires_at),
)

NOTIFICATION_EMAIL = TaskKind(
    state=NOTIFICATION_STATES[Channel.EMAIL],
    perform=_send_email,
    concurrency=lambda settings: settings.notification_email_concurrency,
    returning=_COLUMNS,
)
NOTIFICATION_WEBHOOK = TaskKind(
    state=NOTIFICATION_STATES[Channel.WEBHOOK],
    perform=_send_webhook,
    concurrency=lambda settings: settings.notification_webhook_concurrency,
    returning=_COLUMNS,
)
NOTIFICATION_KINDS = {Channel.EMAIL: NOTIFICATION_EMAIL, Channel.WEBHOOK: NOTIFICATION_WEBHOOK}
