"""Every must-complete task kind, by name: what recovery runs and the admin API shows.

A new kind of durable work is registered here, and nowhere else.
"""

import uuid

from app.core import metrics
from app.models.base import TaskStatus
from app.tasks.ingest_upload import INGEST_UPLOAD
from app.tasks.notifications import NOTIFICATION_EMAIL, NOTIFICATION_WEBHOOK
from app.tasks.runner import TaskKind, run_task
from app.tasks.welcome_email import WELCOME_EMAIL

MUST_COMPLETE: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (WELCOME_EMAIL, INGEST_UPLOAD, NOTIFICATION_EMAIL, NOTIFICATION_WEBHOOK)
}
metrics.declare_kinds(MUST_COMPLETE)


async def run_named_task(kind_name: str, row_id: uuid.UUID) -> TaskStatus | None:
    """Run a task known by its name: names and ids are all a queue needs to carry."""
    return await run_task(MUST_COMPLETE[kind_name], row_id)
