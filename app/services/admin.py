"""Background work as operators see it: counts, dead letters, and a retry button."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound
from app.models import TASK_STATES
from app.models.base import TaskStatus, utcnow
from app.repositories import tasks as tasks_repo
from app.schemas.admin import (
    FailedTaskPage,
    FailedTaskRead,
    TaskKindName,
    TaskKindSummary,
    TaskRead,
    TasksOverview,
)


class TaskNotFound(NotFound):
    slug = "task-not-found"
    title = "Task not found"


class TaskNotFailed(Conflict):
    slug = "task-not-failed"
    title = "Only failed tasks can be retried"


async def overview(session: AsyncSession) -> TasksOverview:
    """Each kind's counts, at a cost that does not grow with the rows settled and done."""
    now = utcnow()
    summaries = []
    async with session.begin():
        for name, state in TASK_STATES.items():
            counts = await tasks_repo.count_by_status(session, state)
            succeeded, estimated = await tasks_repo.count_succeeded(session, state)
            counts[TaskStatus.SUCCEEDED] = succeeded
            due, oldest = await tasks_repo.due_summary(session, state, now=now)
            age = (now - oldest).total_seconds() if oldest is not None else None
            summary = {
                "kind": name,
                "counts": counts,
                "succeeded_is_estimate": estimated,
                "due": due,
                "oldest_due_age_seconds": age,
            }
            summaries.append(TaskKindSummary.model_validate(summary))
    return TasksOverview(kinds=summaries)


async def due_counts(session: AsyncSession) -> dict[str, int]:
    now = utcnow()
    async with session.begin():
        return {
            name: (await tasks_repo.due_summary(session, state, now=now))[0]
            for name, state in TASK_STATES.items()
        }


async def failed(
    session: AsyncSession, *, kind: TaskKindName | None, cursor: str | None, limit: int
) -> FailedTaskPage:
    """Dead letters of every kind (or of `kind`), newest failure first, a page at a time."""
    states = [TASK_STATES[kind]] if kind else TASK_STATES.values()
    async with session.begin():
        page = await tasks_repo.list_failed(session, states, cursor=cursor, limit=limit)
    items = [FailedTaskRead.model_validate(dict(row)) for row in page.items]
    return FailedTaskPage(items=items, next_cursor=page.next_cursor)


async def task(session: AsyncSession, *, kind: TaskKindName, task_id: uuid.UUID) -> TaskRead:
    """One task as it stands now: to watch it after a retry."""
    async with session.begin():
        row = await tasks_repo.get_task(session, TASK_STATES[kind], task_id)
    if row is None:
        raise TaskNotFound(f"no {kind} task with id {task_id}")
    return TaskRead.model_validate(dict(row))


async def retry(session: AsyncSession, *, kind: TaskKindName, task_id: uuid.UUID) -> TaskRead:
    """Owe a failed row's work afresh; committed before it returns (contract rule 1)."""
    state = TASK_STATES[kind]
    async with session.begin():
        row = await tasks_repo.rearm_failed(session, state, task_id, now=utcnow())
        if row is not None:
            return TaskRead.model_validate(dict(row))
        status = await tasks_repo.get_status(session, state, task_id)
    if status is None:
        raise TaskNotFound(f"no {kind} task with id {task_id}")
    raise TaskNotFailed(f"this {kind} task is {status}, not failed")
