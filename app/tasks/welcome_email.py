"""Welcome email: what to send and to whom. The runner does the claiming, retrying and settling."""

import html
import uuid

from app.integrations.mailer import compose, mail_domain
from app.models.base import TaskStatus
from app.models.user import WELCOME_EMAIL_STATE, User
from app.tasks.runner import Claim, TaskKind, run_task
from app.tasks.runtime import Runtime

SUBJECT = "Welcome to Signup Service"


async def send_welcome_email(user_id: uuid.UUID) -> TaskStatus | None:
    """The BackgroundTasks entry point: an id in, nothing raised."""
    return await run_task(WELCOME_EMAIL, user_id)


def welcome_message_id(user_id: uuid.UUID, generation: int, sender: str) -> str:
    """Deterministic, so a receiver can drop the duplicate of an at-least-once resend."""
    return f"<welcome.{user_id}.{generation}@{mail_domain(sender)}>"


async def _deliver(runtime: Runtime, claim: Claim) -> None:
    sender = runtime.settings.mail_from
    name = claim.row["name"]
    message = compose(
        sender=sender,
        to=claim.row["email"],
        subject=SUBJECT,
        text=f"Hello {name},\n\nWelcome aboard: your account is ready.\n",
        html=f"<p>Hello {html.escape(name)},</p><p>Welcome aboard: your account is ready.</p>",
        message_id=welcome_message_id(claim.row_id, claim.row["welcome_generation"], sender),
    )
    await runtime.mailer.send(message)


WELCOME_EMAIL = TaskKind(
    state=WELCOME_EMAIL_STATE,
    perform=_deliver,
    concurrency=lambda settings: settings.smtp_pool_size,
    returning=(User.email, User.name, User.welcome_generation),
)
