"""Every must-complete task kind, by name: what recovery runs and the admin API retries.

A new kind of durable work has its state columns beside its model (listed in
app.models.TASK_STATES, which the admin API reads), its logic in a module of
its own here, and its entry below; tests/tasks/test_task_kinds.py keeps the
two lists and the API's names in step.
"""

import uuid

from app.core import metrics
from app.models.base import TaskStatus
from app.tasks.csv_import import CSV_IMPORT
from app.tasks.notifications import NOTIFICATION_EMAIL, NOTIFICATION_WEBHOOK
from app.tasks.runner import TaskKind, run_task
from app.tasks.welcome_email import WELCOME_EMAIL

MUST_COMPLETE: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (WELCOME_EMAIL, CSV_IMPORT, NOTIFICATION_EMAIL, NOTIFICATION_WEBHOOK)
}
metrics.declare_kinds(MUST_COMPLETE)


async def run_named_task(name: str, row_id: uuid.UUID) -> TaskStatus | None:
    """Run a task known by its kind's name: names and ids are all a queue needs to carry."""
    return await run_task(MUST_COMPLETE[name], row_id)
